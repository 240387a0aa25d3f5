"""The learner: reward windows, default reward, late outcomes, aggregation, exactly-once
counting, allocation moving to a better arm above the floor, deciders swapping versions."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.db import make_engine, make_session_factory, utcnow
from app.learning.runner import FileLock, PostgresLock, run_pass
from app.settings import Settings
from tests.conftest import ADMIN, PG_URL
from tests.test_decisions_api import decide
from tests.test_outcomes_api import send

Create = Callable[..., dict[str, Any]]
THOMPSON = {"type": "thompson", "min_probability": 0.05, "update_interval_s": 1}


def learn(settings: Settings, *, ahead_s: float) -> list[Any]:
    """One learner pass as if `ahead_s` seconds had passed (so windows have closed)."""
    engine = make_engine(settings.database_url)
    try:
        return run_pass(
            sessions=make_session_factory(engine),
            safety_lag_s=0.0,
            learner="test",
            now=utcnow() + timedelta(seconds=ahead_s),
        )
    finally:
        engine.dispose()


def versions(client: TestClient, key: str = "exp") -> list[dict[str, Any]]:
    response = client.get(f"/v1/experiments/{key}/policy-versions", headers=ADMIN)
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()
    return data


def test_closed_decisions_get_their_reward_or_the_default_and_late_ones_are_ignored(
    client: TestClient, create_experiment: Create, settings: Settings
) -> None:
    create_experiment(
        policy=THOMPSON,
        variants=[{"key": "a"}, {"key": "b"}],
        reward_window_s=0.5,
        default_reward=0.0,
    )
    ids = [decide(client, f"u{i}", decision_id=f"d{i}") for i in range(4)]
    send(client, decision_id="d0", value=1)
    send(client, decision_id="d1", value=1)
    time.sleep(0.6)
    assert send(client, decision_id="d2", value=1)["status"] == "late"
    learn(settings, ahead_s=1)  # the update interval (1 s) has passed
    latest = versions(client)[-1]
    assert latest["number"] == 2
    stats = latest["stats"]
    assert sum(s["count"] for s in stats.values()) == 4
    # d0, d1 rewarded 1; d2's outcome was late and d3 had none: both get the default 0.
    assert sum(s["total"] for s in stats.values()) == 2.0
    by_arm = {v: sum(1 for d in ids if d["variant"] == v) for v in "ab"}
    assert {k: s["count"] for k, s in stats.items()} == by_arm


@pytest.mark.parametrize(("aggregation", "expected"), [("earliest", 2.0), ("sum", 5.0)])
def test_several_outcomes_aggregate_as_configured(
    client: TestClient,
    create_experiment: Create,
    settings: Settings,
    aggregation: str,
    expected: float,
) -> None:
    create_experiment(
        policy={**THOMPSON, "reward": "gaussian"},
        variants=[{"key": "a"}, {"key": "b"}],
        reward_window_s=30,
        reward_aggregation=aggregation,
    )
    decision = decide(client, "u1")
    now = utcnow()
    for offset, value in ((2, 3.0), (1, 2.0)):  # the earliest outcome arrives second
        send(
            client,
            decision_id=decision["decision_id"],
            value=value,
            timestamp=(now + timedelta(seconds=offset)).isoformat(),
        )
    learn(settings, ahead_s=31)
    stats = versions(client)[-1]["stats"][decision["variant"]]
    assert (stats["count"], stats["total"], stats["sum_squares"]) == (1, expected, expected**2)


def test_every_closed_decision_is_counted_exactly_once_across_passes(
    client: TestClient, create_experiment: Create, settings: Settings
) -> None:
    create_experiment(policy=THOMPSON, variants=[{"key": "a"}, {"key": "b"}], reward_window_s=10)
    for i in range(30):
        decide(client, f"first-{i}")
    learn(settings, ahead_s=10)
    assert versions(client)[-1]["decisions_counted"] == 30
    # Nothing new has closed: no new version.
    assert [r.version for r in learn(settings, ahead_s=10)] == [None]
    for i in range(20):
        decide(client, f"second-{i}")
    learn(settings, ahead_s=11)
    counted = [v["decisions_counted"] for v in versions(client)]
    assert counted[0] == 0
    assert counted[-1] == 50
    assert sorted(counted) == counted


def test_allocation_moves_to_the_better_arm_and_never_below_the_floor(
    client: TestClient, create_experiment: Create, settings: Settings
) -> None:
    create_experiment(
        policy=THOMPSON, variants=[{"key": "a"}, {"key": "b"}, {"key": "c"}], reward_window_s=1
    )
    rng = np.random.default_rng(7)
    truth = {"a": 0.1, "b": 0.1, "c": 0.5}
    for round_ in range(4):
        answers = client.post(
            "/v1/experiments/exp/decisions/batch",
            headers=ADMIN,
            json={"items": [{"unit_id": f"r{round_}-{i}"} for i in range(300)]},
        ).json()["items"]
        outcomes = [
            {"decision_id": a["decision_id"], "value": float(rng.random() < truth[a["variant"]])}
            for a in answers
        ]
        assert (
            client.post("/v1/outcomes/batch", json={"items": outcomes}, headers=ADMIN).status_code
            == 200
        )
        learn(settings, ahead_s=1.0 + round_ * 0.01)
    allocation = versions(client)[-1]["allocation"]
    assert allocation["c"] > 0.85
    assert min(allocation.values()) >= 0.05 - 1e-12
    # Deciders pick up the new version without a restart, by the cheap revision check.
    time.sleep(0.2)
    latest = versions(client)[-1]["number"]
    served = [decide(client, f"after-{i}") for i in range(200)]
    assert {a["policy_version"] for a in served} == {latest}
    assert sum(a["variant"] == "c" for a in served) > 150


def test_fixed_splits_and_non_experimental_decisions_are_not_learned(
    client: TestClient, create_experiment: Create, settings: Settings
) -> None:
    create_experiment("ab", reward_window_s=1)
    create_experiment(
        "bandit", policy=THOMPSON, reward_window_s=1, variants=[{"key": "a"}, {"key": "b"}]
    )
    client.post("/v1/experiments/bandit/pause", headers=ADMIN)
    for i in range(10):
        decide(client, f"u{i}", key="ab")
        decide(client, f"u{i}", key="bandit")
    client.post("/v1/experiments/bandit/resume", headers=ADMIN)
    assert [(r.experiment, r.version) for r in learn(settings, ahead_s=2)] == [("bandit", None)]
    assert [v["number"] for v in versions(client, "ab")] == [1]
    assert [v["number"] for v in versions(client, "bandit")] == [1]


def test_only_one_process_holds_the_sqlite_learner_lock(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "db.learner.lock"), FileLock(tmp_path / "db.learner.lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.postgres
def test_only_one_connection_holds_the_postgres_learner_lock() -> None:
    assert PG_URL
    engine_a, engine_b = make_engine(PG_URL), make_engine(PG_URL)
    first, second = PostgresLock(engine_a), PostgresLock(engine_b)
    try:
        assert first.acquire()
        assert not second.acquire()
        assert first.held()
        first.release()
        assert second.acquire()
    finally:
        first.release()
        second.release()
        engine_a.dispose()
        engine_b.dispose()
