"""Outcomes: join to decisions, accepted / duplicate / late / unknown, never counted twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests.conftest import ADMIN, count_rows
from tests.test_decisions_api import decide

Create = Callable[..., dict[str, Any]]


def send(client: TestClient, **item: Any) -> dict[str, Any]:
    response = client.post("/v1/outcomes", json=item, headers=ADMIN)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_outcome_is_accepted_once_and_a_retry_is_a_duplicate(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    decision = decide(client, "u1")
    assert send(client, decision_id=decision["decision_id"], value=1.0)["status"] == "accepted"
    assert send(client, decision_id=decision["decision_id"], value=1.0)["status"] == "duplicate"
    assert count_rows(engine, "outcomes") == 1


def test_outcome_ids_distinguish_repeated_equal_values(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment(reward_aggregation="sum")
    d = decide(client, "u1")["decision_id"]
    assert send(client, decision_id=d, value=5, outcome_id="p1")["status"] == "accepted"
    assert send(client, decision_id=d, value=5, outcome_id="p2")["status"] == "accepted"
    assert send(client, decision_id=d, value=5, outcome_id="p2")["status"] == "duplicate"
    assert count_rows(engine, "outcomes") == 2


def test_unknown_decision_is_reported_and_not_stored(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    result = send(client, decision_id="never-made", value=1)
    assert result == {"decision_id": "never-made", "metric": None, "status": "unknown_decision"}
    assert count_rows(engine, "outcomes") == 0


def test_outcome_after_the_window_is_stored_and_flagged_late(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment(reward_window_s=0.3)
    d = decide(client, "u1")["decision_id"]
    time.sleep(0.4)
    assert send(client, decision_id=d, value=1)["status"] == "late"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT late FROM outcomes")).scalar_one() in (True, 1)


def test_outcome_timestamped_after_the_window_is_late(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(reward_window_s=60)
    d = decide(client, "u1")["decision_id"]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert send(client, decision_id=d, value=1, timestamp=later)["status"] == "late"


def test_batch_reports_a_status_per_item_and_counts(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment()
    d1 = decide(client, "u1")["decision_id"]
    d2 = decide(client, "u2")["decision_id"]
    items = [
        {"decision_id": d1, "value": 1},
        {"decision_id": d1, "value": 1},  # same outcome twice in one batch
        {"decision_id": d2, "value": 0, "metric": "latency_ms"},
        {"decision_id": "nope", "value": 1},
    ]
    response = client.post("/v1/outcomes/batch", json={"items": items}, headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [i["status"] for i in body["items"]] == [
        "accepted",
        "duplicate",
        "accepted",
        "unknown_decision",
    ]
    assert [i["metric"] for i in body["items"]] == ["reward", "reward", "latency_ms", None]
    assert body["counts"] == {"accepted": 2, "duplicate": 1, "late": 0, "unknown_decision": 1}


def test_bernoulli_reward_outside_0_1_is_422_and_nothing_is_written(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment(policy={"type": "thompson"}, variants=[{"key": "a"}, {"key": "b"}])
    d = decide(client, "u1")["decision_id"]
    items = [{"decision_id": d, "value": 1, "metric": "clicks"}, {"decision_id": d, "value": 3}]
    response = client.post("/v1/outcomes/batch", json={"items": items}, headers=ADMIN)
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["rule"]) == ("body.items[1].value", "reward_range")
    assert count_rows(engine, "outcomes") == 0
