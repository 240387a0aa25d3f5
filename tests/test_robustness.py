"""Failure modes: slow commits, a request the database refuses sharing a batch, a broken
experiment in a learner pass, PATCHes that must not silently change an experiment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.db import make_engine
from app.decisions.writer import CommitTooLate, DecisionWriter
from app.learning import service as learning_service
from app.settings import Settings
from tests.conftest import ADMIN, count_rows
from tests.test_decisions_api import decide
from tests.test_learner import learn, versions
from tests.test_outcomes_api import send

Create = Callable[..., dict[str, Any]]


def row(decision_id: str, *, variant_id: int, decided_at: datetime) -> dict[str, Any]:
    return {
        "id": decision_id,
        "experiment_id": 1,
        "unit_id": "u",
        "variant_id": variant_id,
        "arm": 0,
        "propensity": 0.5,
        "probabilities": {"control": 0.5, "treatment": 0.5},
        "policy_version": 1,
        "context": None,
        "decided_at": decided_at,
        "fallback": False,
        "experimental": True,
    }


def write(url: str, requests: list[list[dict[str, Any]]], max_delay_s: float | None) -> list[Any]:
    async def run() -> list[Any]:
        writer = DecisionWriter(make_engine(url), max_batch=1000, max_delay_s=max_delay_s)
        writer.start()
        try:
            return await asyncio.gather(
                *(writer.submit(rows, client_ids=False) for rows in requests),
                return_exceptions=True,
            )
        finally:
            await writer.stop()

    return asyncio.run(run())


def variant_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT min(id) FROM variants")).scalar_one())


def test_a_decision_that_cannot_commit_in_time_is_refused_not_lost_to_the_learner(
    database_url: str, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    stale = datetime.now(UTC) - timedelta(seconds=3)
    [result] = write(
        database_url,
        [[row("late-1", variant_id=variant_id(engine), decided_at=stale)]],
        max_delay_s=2.5,
    )
    assert isinstance(result, CommitTooLate)
    assert count_rows(engine, "decisions") == 0


def test_a_request_the_database_refuses_fails_alone_not_its_whole_batch(
    database_url: str, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    now = datetime.now(UTC)
    good = variant_id(engine)
    requests = [[row(f"ok-{i}", variant_id=good, decided_at=now)] for i in range(3)]
    requests.insert(1, [row("bad", variant_id=999_999, decided_at=now)])  # no such variant
    results = write(database_url, requests, max_delay_s=None)
    assert [isinstance(r, Exception) for r in results] == [False, True, False, False]
    with engine.connect() as conn:
        ids = set(conn.execute(text("SELECT id FROM decisions")).scalars())
    assert ids == {"ok-0", "ok-1", "ok-2"}


def test_patching_a_live_policy_changes_only_the_settings_named(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(
        policy={
            "type": "thompson",
            "reward": "gaussian",
            "min_probability": 0.1,
            "update_interval_s": 5,
        },
        variants=[{"key": "a"}, {"key": "b"}],
    )
    response = client.patch(
        "/v1/experiments/exp",
        headers=ADMIN,
        json={"policy": {"type": "thompson", "min_probability": 0.2}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["policy"] == {
        "type": "thompson",
        "reward": "gaussian",
        "min_probability": 0.2,
        "update_interval_s": 5.0,
    }
    frozen = client.patch(
        "/v1/experiments/exp",
        headers=ADMIN,
        json={"policy": {"type": "thompson", "reward": "bernoulli"}},
    )
    assert frozen.status_code == 409
    assert "reward model" in frozen.json()["detail"]


def test_allocation_shows_what_is_served(client: TestClient, create_experiment: Create) -> None:
    create_experiment(
        policy={"type": "thompson"}, variants=[{"key": "a", "is_control": True}, {"key": "b"}]
    )
    assert client.get("/v1/experiments/exp", headers=ADMIN).json()["allocation"] == {
        "a": 0.5,
        "b": 0.5,
    }
    paused = client.post("/v1/experiments/exp/pause", headers=ADMIN).json()
    assert paused["allocation"] == {"a": 1.0, "b": 0.0}
    concluded = client.post(
        "/v1/experiments/exp/conclude", json={"winner": "b"}, headers=ADMIN
    ).json()
    assert concluded["allocation"] == {"a": 0.0, "b": 1.0}


def test_one_failing_experiment_does_not_stop_the_others_learning(
    client: TestClient,
    create_experiment: Create,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = {"type": "thompson", "update_interval_s": 1}
    create_experiment(
        "broken", policy=policy, variants=[{"key": "a"}, {"key": "b"}], reward_window_s=1
    )
    create_experiment(
        "fine", policy=policy, variants=[{"key": "a"}, {"key": "b"}], reward_window_s=1
    )
    for i in range(5):
        decide(client, f"u{i}", key="broken")
        decide(client, f"u{i}", key="fine")
    real = learning_service.compute

    def failing(**kwargs: Any) -> Any:
        if kwargs["experiment"].key == "broken":
            raise RuntimeError("boom")
        return real(**kwargs)

    monkeypatch.setattr(learning_service, "compute", failing)
    results = {r.experiment: r for r in learn(settings, ahead_s=2)}
    assert results["broken"].error == "boom"
    assert results["fine"].version == 2
    assert [v["number"] for v in versions(client, "fine")] == [1, 2]


def test_the_same_instant_with_another_offset_is_a_duplicate_outcome(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment()
    d = decide(client, "u1")["decision_id"]
    instant = datetime.now(UTC)
    assert send(client, decision_id=d, value=1, timestamp=instant.isoformat())["status"] == (
        "accepted"
    )
    ahead = instant.astimezone(timezone(timedelta(hours=5))).isoformat()
    behind = instant.astimezone(timezone(timedelta(hours=-3, minutes=-30))).isoformat()
    for stamp in (ahead, behind):
        assert send(client, decision_id=d, value=1, timestamp=stamp)["status"] == "duplicate"


def test_a_stale_request_fails_alone_not_the_fresh_ones_beside_it(
    database_url: str, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    now = datetime.now(UTC)
    good = variant_id(engine)
    requests = [[row("stale", variant_id=good, decided_at=now - timedelta(seconds=5))]]
    requests += [[row(f"fresh-{i}", variant_id=good, decided_at=now)] for i in range(4)]
    results = write(database_url, requests, max_delay_s=2.5)
    assert isinstance(results[0], CommitTooLate)
    assert not any(isinstance(r, Exception) for r in results[1:])
    assert count_rows(engine, "decisions") == 4


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_decisions_survive_the_server_closing_the_writers_connections(
    client: TestClient, create_experiment: Create, database_url: str
) -> None:
    create_experiment()
    decide(client, "before")
    admin = make_engine(database_url)
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            ).scalar_one()
    finally:
        admin.dispose()
    assert killed >= 1
    for i in range(3):  # every answer a 200: dead connections are retried on fresh ones
        decide(client, f"after-{i}")


def test_a_version_published_meanwhile_wins_over_a_stale_proposal(
    client: TestClient, create_experiment: Create, settings: Settings
) -> None:
    from app.db import make_session_factory, transaction
    from app.experiments import service as experiments_service

    create_experiment(
        policy={"type": "thompson", "update_interval_s": 1},
        variants=[{"key": "a"}, {"key": "b"}],
        reward_window_s=1,
    )
    for i in range(5):
        decide(client, f"u{i}")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        with sessions() as session:
            experiment = experiments_service.get(session=session, key="exp")
            proposal = learning_service.compute(
                session=session,
                experiment=experiment,
                now=datetime.now(UTC) + timedelta(seconds=2),
                safety_lag_s=0.0,
            )
        assert isinstance(proposal, learning_service.Proposal)
        # Meanwhile an admin raises the floor: version 2 appears.
        client.patch(
            "/v1/experiments/exp",
            headers=ADMIN,
            json={"policy": {"type": "thompson", "min_probability": 0.3}},
        )
        with transaction(sessions) as session:
            experiment = experiments_service.get(session=session, key="exp", for_update=True)
            result = learning_service.publish_proposal(
                session=session, experiment=experiment, proposal=proposal, learner="test"
            )
    finally:
        engine.dispose()
    assert result.version is None
    assert [v["number"] for v in versions(client)] == [1, 2]
