"""Deciding through the HTTP API: stickiness, idempotency, batch, status rules, logging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.main import create_app
from app.settings import Settings
from tests.conftest import ADMIN, count_rows

Create = Callable[..., dict[str, Any]]


def decide(client: TestClient, unit: str, key: str = "exp", **extra: Any) -> dict[str, Any]:
    response = client.post(
        f"/v1/experiments/{key}/decisions", json={"unit_id": unit, **extra}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_decision_is_logged_with_propensity_and_probability_vector(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment(
        variants=[
            {"key": "a", "weight": 0.25, "payload": {"m": 1}},
            {"key": "b", "weight": 0.75, "payload": {"m": 2}},
        ]
    )
    answer = decide(client, "user-1", context={"country": "DE", "age": 31, "new": True})
    assert set(answer) == {
        "decision_id",
        "variant",
        "payload",
        "propensity",
        "policy_version",
        "fallback",
        "experimental",
    }
    assert answer["propensity"] == {"a": 0.25, "b": 0.75}[answer["variant"]]
    assert answer["payload"] == {"a": {"m": 1}, "b": {"m": 2}}[answer["variant"]]
    assert (answer["policy_version"], answer["fallback"], answer["experimental"]) == (
        1,
        False,
        True,
    )
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT unit_id, propensity, probabilities, context, experimental "
                "FROM decisions WHERE id = :id"
            ),
            {"id": answer["decision_id"]},
        ).one()
    assert row.unit_id == "user-1"
    assert row.propensity == answer["propensity"]
    probabilities = (
        row.probabilities
        if isinstance(row.probabilities, dict)
        else __import__("json").loads(row.probabilities)
    )
    assert probabilities == {"a": 0.25, "b": 0.75}


def test_unit_keeps_variant_across_decisions_and_app_restarts(
    settings: Settings, create_experiment: Create, client: TestClient
) -> None:
    create_experiment(variants=[{"key": "a"}, {"key": "b"}, {"key": "c"}])
    first = {f"u{i}": decide(client, f"u{i}")["variant"] for i in range(60)}
    assert len(set(first.values())) == 3
    again = {f"u{i}": decide(client, f"u{i}")["variant"] for i in range(60)}
    assert again == first
    with TestClient(create_app(settings)) as restarted:
        after_restart = {f"u{i}": decide(restarted, f"u{i}")["variant"] for i in range(60)}
    assert after_restart == first


def test_client_decision_id_makes_the_call_idempotent(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment(policy={"type": "thompson"}, variants=[{"key": "a"}, {"key": "b"}])
    first = decide(client, "u1", decision_id="order-42")
    for _ in range(3):
        assert decide(client, "u1", decision_id="order-42") == first
    assert count_rows(engine, "decisions") == 1


def test_reusing_a_decision_id_for_another_unit_is_409_and_writes_nothing(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    decide(client, "u1", decision_id="d-1")
    response = client.post(
        "/v1/experiments/exp/decisions/batch",
        headers=ADMIN,
        json={
            "items": [
                {"unit_id": "u9", "decision_id": "d-new"},
                {"unit_id": "u2", "decision_id": "d-1"},
            ]
        },
    )
    assert response.status_code == 409
    assert "decision_id 'd-1'" in response.json()["detail"]
    assert count_rows(engine, "decisions") == 1


def test_batch_decides_every_unit_in_one_call(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    items = [{"unit_id": f"u{i}"} for i in range(2_000)]
    response = client.post(
        "/v1/experiments/exp/decisions/batch", json={"items": items}, headers=ADMIN
    )
    assert response.status_code == 200
    answers = response.json()["items"]
    assert len(answers) == 2_000
    assert len({a["decision_id"] for a in answers}) == 2_000
    assert count_rows(engine, "decisions") == 2_000
    # The batch form gives each unit the same sticky variant as the single form.
    assert decide(client, "u7")["variant"] == answers[7]["variant"]


def test_paused_serves_control_and_concluded_serves_winner_non_experimentally(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(
        policy={"type": "thompson"},
        variants=[{"key": "a", "is_control": True}, {"key": "b"}, {"key": "c"}],
    )
    client.post("/v1/experiments/exp/pause", headers=ADMIN)
    paused = [decide(client, f"u{i}") for i in range(20)]
    assert {(a["variant"], a["propensity"], a["experimental"]) for a in paused} == {
        ("a", 1.0, False)
    }
    client.post("/v1/experiments/exp/conclude", json={"winner": "c"}, headers=ADMIN)
    concluded = [decide(client, f"u{i}") for i in range(20)]
    assert {(a["variant"], a["propensity"], a["experimental"]) for a in concluded} == {
        ("c", 1.0, False)
    }


def test_draft_experiment_refuses_decisions(client: TestClient, create_experiment: Create) -> None:
    create_experiment(start=False)
    response = client.post("/v1/experiments/exp/decisions", json={"unit_id": "u"}, headers=ADMIN)
    assert response.status_code == 409
    assert "never started" in response.json()["detail"]
    client.post("/v1/experiments/exp/archive", headers=ADMIN)  # archived without a start
    response = client.post("/v1/experiments/exp/decisions", json={"unit_id": "u"}, headers=ADMIN)
    assert response.status_code == 409


def test_growing_coverage_never_moves_a_unit_between_arms(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(coverage=0.3)
    units = [f"user-{i}" for i in range(400)]
    before = {u: decide(client, u) for u in units}
    inside = {u for u, a in before.items() if a["experimental"]}
    assert 80 < len(inside) < 160  # ~30% of 400
    assert all(before[u]["variant"] == "control" for u in units if u not in inside)
    client.patch("/v1/experiments/exp", json={"coverage": 0.8}, headers=ADMIN)
    after = {u: decide(client, u) for u in units}
    assert all(after[u]["experimental"] for u in inside)
    assert all(after[u]["variant"] == before[u]["variant"] for u in inside)


def test_unknown_experiment_is_404(client: TestClient) -> None:
    response = client.post(
        "/v1/experiments/missing/decisions", json={"unit_id": "u"}, headers=ADMIN
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "policy", [{"type": "thompson"}, {"type": "epsilon_greedy", "epsilon": 0.3}, {"type": "ucb1"}]
)
def test_bandit_decisions_replay_exactly_from_their_logs(
    client: TestClient, create_experiment: Create, engine: Engine, policy: dict[str, Any]
) -> None:
    from app.bandits import build_policy
    from app.bandits.base import PolicyState

    create_experiment(policy=policy, variants=[{"key": "a"}, {"key": "b"}, {"key": "c"}])
    answers = [decide(client, f"u{i}") for i in range(50)]
    with engine.connect() as conn:
        salt = conn.execute(text("SELECT salt FROM experiments")).scalar_one()
        state = conn.execute(text("SELECT state FROM policy_versions")).scalar_one()
    state = state if isinstance(state, dict) else __import__("json").loads(state)
    params = {k: v for k, v in policy.items() if k != "type"}
    replayed = build_policy(policy["type"], params, n_arms=3, weights=None)
    for i, answer in enumerate(answers):
        choice = replayed.choose(
            PolicyState.from_json(state),
            salt=salt,
            unit_id=f"u{i}",
            decision_id=answer["decision_id"],
        )
        assert "abc"[choice.arm] == answer["variant"]
        assert choice.propensity == answer["propensity"]


def test_single_decisions_are_served_by_the_lean_route_before_fastapi_routers(
    settings: Settings,
) -> None:
    from starlette.routing import Route

    from app.decisions.router import fast_route

    routes = create_app(settings).router.routes
    position = routes.index(fast_route)
    assert all(isinstance(r, Route) for r in routes[:position])
    assert fast_route.path == "/v1/experiments/{key}/decisions"


def test_a_malformed_experiment_key_in_the_path_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/experiments/bad key!/decisions", json={"unit_id": "u"}, headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path.key"
