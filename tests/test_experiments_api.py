"""Experiment lifecycle through the HTTP API, on every database backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import ADMIN, count_rows, experiment_body


def test_create_returns_a_draft_with_control_and_generated_salt(client: TestClient) -> None:
    response = client.post("/v1/experiments", json=experiment_body(), headers=ADMIN)
    assert response.status_code == 201
    data = response.json()
    assert data["status"] == "draft"
    assert [v["key"] for v in data["variants"]] == ["control", "treatment"]
    assert [v["is_control"] for v in data["variants"]] == [True, False]
    assert len(data["salt"]) == 16
    assert data["policy"] == {"type": "fixed", "update_interval_s": 60.0}
    assert data["policy_version"] == 0


def test_first_variant_is_control_when_none_is_flagged(client: TestClient) -> None:
    body = experiment_body(variants=[{"key": "a"}, {"key": "b"}, {"key": "c"}])
    data = client.post("/v1/experiments", json=body, headers=ADMIN).json()
    assert [v["is_control"] for v in data["variants"]] == [True, False, False]


def test_duplicate_key_is_409(client: TestClient) -> None:
    assert client.post("/v1/experiments", json=experiment_body(), headers=ADMIN).status_code == 201
    response = client.post("/v1/experiments", json=experiment_body(), headers=ADMIN)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "already exists" in response.json()["detail"]


def test_start_publishes_version_one_with_the_weights(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    variants = [{"key": "a", "weight": 0.2}, {"key": "b", "weight": 0.8}]
    data = create_experiment(variants=variants)
    assert data["status"] == "running"
    assert data["policy_version"] == 1
    assert data["allocation"] == {"a": 0.2, "b": 0.8}
    versions = client.get("/v1/experiments/exp/policy-versions", headers=ADMIN).json()
    assert [v["number"] for v in versions] == [1]
    assert versions[0]["decisions_counted"] == 0


def test_lifecycle_and_invalid_transitions(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    create_experiment(start=False)
    post = lambda action, **kw: client.post(f"/v1/experiments/exp/{action}", headers=ADMIN, **kw)  # noqa: E731
    assert post("pause").status_code == 409  # draft cannot pause
    assert post("start").json()["status"] == "running"
    assert post("start").status_code == 409
    assert post("archive").status_code == 409  # running must be paused or concluded first
    assert post("pause").json()["status"] == "paused"
    assert post("resume").json()["status"] == "running"
    bad = post("conclude", json={"winner": "nope"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.winner"
    done = post("conclude", json={"winner": "treatment"}).json()
    assert (done["status"], done["winner"]) == ("concluded", "treatment")
    assert done["ended_at"] is not None
    assert post("resume").status_code == 409
    assert post("archive").json()["status"] == "archived"
    assert client.patch("/v1/experiments/exp", json={"name": "x"}, headers=ADMIN).status_code == 409
    actions = [
        r["action"] for r in client.get("/v1/experiments/exp/revisions", headers=ADMIN).json()
    ]
    assert actions == ["created", "start", "pause", "resume", "conclude", "archive"]


def test_draft_accepts_any_change_and_logs_the_diff(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    create_experiment(start=False)
    change = {
        "variants": [{"key": "x"}, {"key": "y"}, {"key": "z"}],
        "policy": {"type": "thompson", "min_probability": 0.05},
        "reward_window_s": 30,
    }
    response = client.patch("/v1/experiments/exp", json=change, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert [v["key"] for v in response.json()["variants"]] == ["x", "y", "z"]
    revision = client.get("/v1/experiments/exp/revisions", headers=ADMIN).json()[-1]
    assert revision["action"] == "updated"
    assert revision["actor"] == "key:configured admin key (config)"
    assert set(revision["changes"]) == {"variants", "policy", "reward_window_s"}
    assert revision["changes"]["reward_window_s"] == {"from": 60.0, "to": 30.0}


def test_running_experiment_refuses_changes_that_alter_logged_data(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]], engine: Engine
) -> None:
    create_experiment(policy={"type": "thompson"}, variants=[{"key": "a"}, {"key": "b"}])
    revisions_before = count_rows(engine, "experiment_revisions")
    for change in (
        {"variants": [{"key": "a"}, {"key": "b"}, {"key": "c"}]},
        {"reward_window_s": 5},
        {"salt": "abc"},
        {"default_reward": 1},
        {"policy": {"type": "ucb1"}},
    ):
        response = client.patch("/v1/experiments/exp", json=change, headers=ADMIN)
        assert response.status_code == 409, (change, response.text)
    assert count_rows(engine, "experiment_revisions") == revisions_before
    ok = client.patch(
        "/v1/experiments/exp",
        json={
            "name": "renamed",
            "coverage": 0.5,
            "policy": {"type": "thompson", "min_probability": 0.2},
        },
        headers=ADMIN,
    )
    assert ok.status_code == 200, ok.text
    data = ok.json()
    assert (data["name"], data["coverage"]) == ("renamed", 0.5)
    # New settings publish a new version at once: the floor now holds.
    assert data["policy_version"] == 2
    assert min(data["allocation"].values()) >= 0.2


def test_list_is_paginated_and_filtered(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    for i in range(5):
        create_experiment(f"e{i}", start=i % 2 == 0)
    first = client.get("/v1/experiments?limit=2", headers=ADMIN).json()
    assert [e["key"] for e in first["items"]] == ["e0", "e1"]
    second = client.get(
        f"/v1/experiments?limit=2&cursor={first['next_cursor']}", headers=ADMIN
    ).json()
    assert [e["key"] for e in second["items"]] == ["e2", "e3"]
    last = client.get(
        f"/v1/experiments?limit=2&cursor={second['next_cursor']}", headers=ADMIN
    ).json()
    assert [e["key"] for e in last["items"]] == ["e4"]
    assert last["next_cursor"] is None
    running = client.get("/v1/experiments?status=running", headers=ADMIN).json()
    assert [e["key"] for e in running["items"]] == ["e0", "e2", "e4"]


def test_unknown_experiment_is_404_problem(client: TestClient) -> None:
    response = client.get("/v1/experiments/nope", headers=ADMIN)
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == 404
    assert body["type"].endswith("/not-found")
    assert body["instance"] == "/v1/experiments/nope"
