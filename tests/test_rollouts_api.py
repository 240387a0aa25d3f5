"""Automatic winner rollout through the real API and controller: an A/B test with a real effect
rolls out through every step to `concluded`; harm injected into a guardrail mid-ramp rolls back
within the failure limit; an A/A test never rolls out; approval, pause / resume and manual
rollback; bad rollout policies are 422s."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db import make_engine, make_session_factory
from app.rollouts.service import Controller, Outcome
from app.settings import Settings
from tests.conftest import ADMIN

Create = Callable[..., dict[str, Any]]
WINDOW_S = 0.1  # outcomes come at once; a short window closes decisions quickly
VARIANTS = [{"key": "control", "is_control": True}, {"key": "treatment"}]
ROLLOUT = {
    "steps": [0.5, 0.8, 1.0],
    "min_decisions": 600,
    "min_step_s": 0,
    "min_step_decisions": 400,
    "failure_limit": 2,
}
GUARDED = {
    "planned_decisions": 4000,
    "guardrails": [
        {"metric": "latency_ms", "higher_is_better": False, "tolerance": 0.05, "missing": "skip"}
    ],
}


@pytest.fixture
def controller(settings: Settings) -> Iterator[Controller]:
    engine = make_engine(settings.database_url)
    try:
        yield Controller(make_session_factory(engine), "test-controller")
    finally:
        engine.dispose()


def create(create_experiment: Create, key: str = "exp", **overrides: Any) -> None:
    body: dict[str, Any] = {
        "variants": VARIANTS,
        "policy": {"type": "fixed"},
        "reward_window_s": WINDOW_S,
        "rollout": ROLLOUT,
        "analysis": GUARDED,
        "salt": f"salt-{key}",
    }
    create_experiment(key, **{**body, **overrides})


class Traffic:
    """Seeded users: conversion p[variant]; latency_ms ~ N(mean[variant], 10)."""

    def __init__(self, client: TestClient, key: str, seed: int) -> None:
        self.client, self.key, self.rng = client, key, random.Random(seed)
        self.counter = 0
        self.p = {"control": 0.10, "treatment": 0.10}
        self.latency = {"control": 100.0, "treatment": 100.0}

    def round(self, n: int) -> dict[str, int]:
        items = []
        for _ in range(n):
            self.counter += 1
            items.append(
                {"unit_id": f"u{self.counter}", "decision_id": f"{self.key}-{self.counter}"}
            )
        response = self.client.post(
            f"/v1/experiments/{self.key}/decisions/batch", json={"items": items}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        served: dict[str, int] = {}
        outcomes = []
        for answer in response.json()["items"]:
            variant = answer["variant"]
            served[variant] = served.get(variant, 0) + 1
            decision = answer["decision_id"]
            if self.rng.random() < self.p[variant]:
                outcomes.append({"decision_id": decision, "value": 1})
            latency = self.rng.gauss(self.latency[variant], 10.0)
            outcomes.append({"decision_id": decision, "value": latency, "metric": "latency_ms"})
        for start in range(0, len(outcomes), 5000):
            sent = self.client.post(
                "/v1/outcomes/batch", json={"items": outcomes[start : start + 5000]}, headers=ADMIN
            )
            assert sent.status_code == 200, sent.text
        time.sleep(WINDOW_S * 1.5)  # every decision of the round is closed now
        return served


def control_pass(client: TestClient, controller: Controller, key: str = "exp") -> Outcome:
    (outcome,) = [o for o in controller.run_pass() if o.experiment == key]
    client.app.state.runtime.policies.refresh()  # type: ignore[attr-defined]
    return outcome


def experiment(client: TestClient, key: str = "exp") -> dict[str, Any]:
    response = client.get(f"/v1/experiments/{key}", headers=ADMIN)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def revisions(client: TestClient, key: str = "exp") -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = client.get(
        f"/v1/experiments/{key}/revisions", headers=ADMIN
    ).json()
    return data


def test_a_real_effect_rolls_out_through_every_step_to_concluded(
    client: TestClient, create_experiment: Create, controller: Controller
) -> None:
    create(create_experiment)
    traffic = Traffic(client, "exp", seed=1)
    traffic.p["treatment"] = 0.25
    actions, shares = [], []
    for _ in range(30):
        served = traffic.round(500)
        shares.append(served.get("treatment", 0) / 500)
        outcome = control_pass(client, controller)
        actions.append(outcome.action)
        if experiment(client)["status"] == "concluded":
            break
    assert actions.count("start") == 1
    assert actions.count("advance") == 2
    assert actions[-1] == "complete"
    final = experiment(client)
    assert final["winner"] == "treatment"
    assert final["allocation"] == {"control": 0.0, "treatment": 1.0}
    # The served split followed the steps (0.5, 0.8, 1.0): the share in each round's traffic.
    start = actions.index("start")
    assert shares[start + 1] == pytest.approx(0.5, abs=0.08)
    second = actions.index("advance")
    assert shares[second + 1] == pytest.approx(0.8, abs=0.06)
    third = actions.index("advance", second + 1)
    assert shares[third + 1] == 1.0
    log = [r["action"] for r in revisions(client)]
    assert log[-4:] == ["rollout_start", "rollout_advance", "rollout_advance", "rollout_complete"]
    started = next(r for r in revisions(client) if r["action"] == "rollout_start")
    numbers = started["changes"]["rollout"]["evidence"]
    assert numbers["recommendation"]["action"] == "ship"  # the numbers behind the decision
    assert started["changes"]["status"] == {"from": "running", "to": "rolling_out"}
    state = client.get("/v1/experiments/exp/rollout", headers=ADMIN).json()
    assert state["current"] is None
    assert [r["state"] for r in state["history"]] == ["completed"]


def test_guardrail_harm_mid_ramp_rolls_back_within_the_failure_limit(
    client: TestClient, create_experiment: Create, controller: Controller
) -> None:
    create(create_experiment)
    traffic = Traffic(client, "exp", seed=2)
    traffic.p["treatment"] = 0.25
    actions: list[str] = []
    for _ in range(20):
        traffic.round(500)
        actions.append(control_pass(client, controller).action)
        if "start" in actions:
            break
    assert actions[-1] == "start"
    before = client.get("/v1/experiments/exp/policy-versions", headers=ADMIN).json()
    pre_rollout = before[-2]["allocation"]  # the version the rollout replaced
    traffic.latency["treatment"] = 160.0  # the new model is much slower: harm
    after_start: list[str] = []
    for _ in range(10):
        traffic.round(500)
        after_start.append(control_pass(client, controller).action)
        if after_start[-1] == "rollback":
            break
    assert after_start[-1] == "rollback"
    assert after_start.count("failure") == 1  # failure_limit 2: the second failed check
    assert "advance" not in after_start or after_start.index("advance") < after_start.index(
        "failure"
    )
    final = experiment(client)
    assert final["status"] == "rolled_back"
    assert final["allocation"] == pre_rollout
    rollback = revisions(client)[-1]
    assert rollback["action"] == "rollout_rollback"
    assert "latency_ms" in rollback["changes"]["rollout"]["reason"]
    alerts = client.get("/v1/alerts?experiment=exp", headers=ADMIN)
    if alerts.status_code == 200:  # the alerts API (issue 7) lists the rollback
        assert any(a["kind"] == "rollout" for a in alerts.json()["items"])
    # Rolled back: served like running (the pre-rollout split), no new rollout starts.
    served = traffic.round(400)
    assert 0.35 < served.get("treatment", 0) / 400 < 0.65
    assert all(o.experiment != "exp" for o in controller.run_pass())  # no longer watched


def test_an_a_a_test_never_rolls_out(
    client: TestClient, create_experiment: Create, controller: Controller
) -> None:
    create(create_experiment)
    traffic = Traffic(client, "exp", seed=3)
    for _ in range(12):
        traffic.round(500)
        assert control_pass(client, controller).action == "none"
    assert experiment(client)["status"] == "running"
    assert client.get("/v1/experiments/exp/rollout", headers=ADMIN).json()["history"] == []


def test_approval_pause_resume_and_manual_rollback(
    client: TestClient, create_experiment: Create, controller: Controller
) -> None:
    create(create_experiment, rollout={**ROLLOUT, "approval": True})
    traffic = Traffic(client, "exp", seed=4)
    traffic.p["treatment"] = 0.25
    for _ in range(20):
        traffic.round(500)
        if control_pass(client, controller).action == "start":
            break
    traffic.round(500)
    assert control_pass(client, controller).action == "await_approval"
    traffic.round(100)
    assert control_pass(client, controller).action == "none"  # still waiting
    assert client.post("/v1/experiments/exp/pause", headers=ADMIN).status_code == 200
    resumed = client.post("/v1/experiments/exp/resume", headers=ADMIN)
    assert resumed.json()["status"] == "rolling_out"
    approved = client.post("/v1/experiments/exp/rollout/approve", headers=ADMIN)
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_step"] == 1
    assert control_pass(client, controller).action == "advance"
    again = client.post("/v1/experiments/exp/rollout/approve", headers=ADMIN)
    assert again.status_code == 409
    rolled = client.post(
        "/v1/experiments/exp/rollout/rollback", json={"reason": "support tickets"}, headers=ADMIN
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["status"] == "rolled_back"
    assert rolled.json()["allocation"] == {"control": 0.5, "treatment": 0.5}
    assert "support tickets" in revisions(client)[-1]["changes"]["rollout"]["reason"]
    assert client.post("/v1/experiments/exp/rollout/rollback", headers=ADMIN).status_code == 409


@pytest.mark.parametrize(
    ("rollout", "field"),
    [
        ({"steps": [0.5, 0.4, 1.0]}, "body.rollout.steps"),
        ({"steps": [0.5, 0.8]}, "body.rollout.steps"),
        ({"steps": [1.5]}, "body.rollout.steps"),
        ({"failure_limit": 0}, "body.rollout.failure_limit"),
        ({"holdback": 0.9}, "body.rollout.holdback"),
        ({"p_best": 0.3}, "body.rollout.p_best"),
        ({"surprise": 1}, "body.rollout.surprise"),
    ],
)
def test_bad_rollout_policies_are_422_naming_the_field(
    client: TestClient, rollout: dict[str, Any], field: str
) -> None:
    body = {"key": "bad", "name": "b", "variants": VARIANTS, "policy": {"type": "fixed"}}
    response = client.post("/v1/experiments", json={**body, "rollout": rollout}, headers=ADMIN)
    assert response.status_code == 422, response.text
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(f.startswith(field) for f in fields), fields
