"""Drift checks end to end: decisions with contexts written into the two windows, then
run_drift_checks: the alerts it raises (once), their evidence, the webhook outbox and the
gauges; skips, overlap, throttling and a broken experiment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from app.alerts.models import Alert
from app.db import transaction, utcnow
from app.decisions.models import Decision
from app.drift import service as drift
from app.experiments import service as experiments
from app.metrics import REGISTRY
from app.outcomes.models import Outcome
from app.settings import Settings
from app.webhooks.models import Webhook, WebhookDelivery
from tests.conftest import make_settings
from tests.report_data import backdate

COUNTRIES = ["DE", "FR", "US"]


@pytest.fixture
def settings(database_url: str) -> Settings:
    # No webhook worker: the test reads the queued deliveries itself.
    return make_settings(database_url, webhooks_enabled=False)


def _sessions(client: TestClient) -> Any:
    return client.app.state.runtime.sessions  # type: ignore[attr-defined]


def _write(
    sessions: Any,
    key: str,
    *,
    start: datetime,
    seconds: float,
    n: int,
    seed: int,
    country: list[float],
    served: list[float] | None = None,
    reward: list[float] | None = None,
    prefix: str,
) -> None:
    """n decisions spread over [start, start + seconds): namespaced context user.country
    (shares `country`), user.age (normal 40 +- 10) and flat device; arms drawn with `served`
    but logged 50/50; a Bernoulli `reward` outcome per arm when given."""
    rng = np.random.default_rng(seed)
    with transaction(sessions) as session:
        experiment = experiments.get(session=session, key=key)
        variants = experiment.variants
        arms = rng.choice(2, size=n, p=served or [0.5, 0.5])
        offsets = np.sort(rng.uniform(0, seconds, size=n))
        countries = rng.choice(COUNTRIES, size=n, p=country)
        ages = rng.normal(40, 10, size=n)
        devices = rng.choice(["mobile", "desktop"], size=n, p=[0.6, 0.4])
        decisions, outcomes = [], []
        for i in range(n):
            at = start + timedelta(seconds=float(offsets[i]))
            decision_id = f"{prefix}-{i}"
            arm = int(arms[i])
            decisions.append(
                {
                    "id": decision_id,
                    "experiment_id": experiment.id,
                    "unit_id": f"{prefix}-unit-{i}",
                    "variant_id": variants[arm].id,
                    "arm": arm,
                    "propensity": 0.5,
                    "probabilities": {v.key: 0.5 for v in variants},
                    "policy_version": 1,
                    "context": {
                        "user": {"country": str(countries[i]), "age": float(ages[i])},
                        "device": str(devices[i]),
                    },
                    "decided_at": at,
                    "fallback": False,
                    "experimental": True,
                }
            )
            if reward is not None and rng.random() < reward[arm]:
                outcomes.append(
                    {
                        "decision_id": decision_id,
                        "experiment_id": experiment.id,
                        "metric": "reward",
                        "value": 1.0,
                        "occurred_at": at + timedelta(seconds=1),
                        "received_at": at + timedelta(seconds=1),
                        "late": False,
                        "dedup_key": "test",
                    }
                )
        session.execute(insert(Decision), decisions)
        if outcomes:
            session.execute(insert(Outcome), outcomes)


def _history(
    client: TestClient,
    key: str,
    now: datetime,
    *,
    recent_country: list[float],
    n: int = 1500,
    recent_served: list[float] | None = None,
    reward: tuple[list[float], list[float]] | None = None,
) -> None:
    """Started 3 days ago; n decisions over the first day (the reference window) and n over
    the last hour (the recent window)."""
    sessions = _sessions(client)
    started = now - timedelta(days=3)
    backdate(sessions, key, started)
    stable = [0.5, 0.3, 0.2]
    _write(
        sessions,
        key,
        start=started,
        seconds=86_400,
        n=n,
        seed=1,
        country=stable,
        reward=reward[0] if reward else None,
        prefix=f"{key}-ref",
    )
    _write(
        sessions,
        key,
        start=now - timedelta(hours=1),
        seconds=3_599,
        n=n,
        seed=2,
        country=recent_country,
        served=recent_served,
        reward=reward[1] if reward else None,
        prefix=f"{key}-rec",
    )


def _alerts(client: TestClient) -> list[Alert]:
    with _sessions(client)() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def _run(client: TestClient, settings: Settings, now: datetime) -> list[drift.DriftCheck]:
    return drift.run_drift_checks(
        sessions=_sessions(client), now=now, settings=settings, force=True
    )


def test_a_drifting_feature_raises_one_alert_with_its_evidence_once(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]], settings: Settings
) -> None:
    create_experiment("exp")
    with transaction(_sessions(client)) as session:
        hook = Webhook(url="http://127.0.0.1:9/hook", secret="s" * 32, events=["alert.*"])
        session.add(hook)
        session.flush()
        hook_id = hook.id
    now = utcnow()
    _history(client, "exp", now, recent_country=[0.2, 0.3, 0.5])

    [check] = _run(client, settings, now)
    assert check.status == "checked"
    bands = {f.feature: f.result.band for f in check.features}
    assert set(bands) == {"user.country", "user.age", "device"}
    assert bands["user.country"] == "significant"
    assert bands["user.age"] == "stable"
    assert bands["device"] == "stable"
    assert check.alerts == ["psi_drift:exp:user.country"]

    [alert] = _alerts(client)
    assert (alert.kind, alert.key, alert.severity) == (
        "psi_drift",
        "psi_drift:exp:user.country",
        "warning",
    )
    evidence = alert.evidence
    country = next(f.result for f in check.features if f.feature == "user.country")
    assert evidence["psi"] == pytest.approx(country.psi)
    assert evidence["psi"] >= 0.25
    assert evidence["band"] == "significant"
    assert evidence["counts"] == {"reference": 1500, "recent": 1500}
    assert {b["bin"] for b in evidence["bins"]} == set(COUNTRIES)
    us = next(b for b in evidence["bins"] if b["bin"] == "US")
    assert us["reference_share"] == pytest.approx(0.2, abs=0.03)
    assert us["recent_share"] == pytest.approx(0.5, abs=0.04)
    assert set(evidence["windows"]) == {
        "reference_start",
        "reference_end",
        "recent_start",
        "recent_end",
    }
    assert REGISTRY.get_sample_value(
        "croupier_feature_psi", {"experiment": "exp", "feature": "user.country"}
    ) == pytest.approx(country.psi)
    with _sessions(client)() as session:
        deliveries = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
        ).all()
    assert [d.event for d in deliveries] == ["alert.raised"]
    assert "psi_drift:exp:user.country" in deliveries[0].body

    # The condition persists: the open alert stands for it, nothing new is raised.
    [again] = _run(client, settings, now + timedelta(minutes=5))
    assert again.status == "checked"
    assert again.alerts == []
    assert len(_alerts(client)) == 1


def test_no_drift_raises_nothing(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]], settings: Settings
) -> None:
    create_experiment("exp")
    now = utcnow()
    _history(client, "exp", now, recent_country=[0.5, 0.3, 0.2])
    [check] = _run(client, settings, now)
    assert check.status == "checked"
    assert all(f.result.band == "stable" for f in check.features)
    assert check.srm is not None
    assert not check.srm.mismatch
    assert check.alerts == []
    assert _alerts(client) == []


def test_reward_drift_and_srm_raise_their_own_alerts(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]], settings: Settings
) -> None:
    create_experiment("exp")
    now = utcnow()
    _history(
        client,
        "exp",
        now,
        recent_country=[0.5, 0.3, 0.2],
        n=3000,
        recent_served=[0.6, 0.4],  # logged 50/50: a sample ratio mismatch
        reward=([0.10, 0.10], [0.10, 0.25]),  # the treatment's rate moved
    )
    [check] = _run(client, settings, now)
    assert check.reward is not None
    assert check.reward.kind == "binary"
    assert [a.drift for a in check.reward.arms] == [False, True]
    assert check.srm is not None
    assert check.srm.mismatch
    assert sorted(check.alerts) == ["reward_drift:exp:treatment", "srm:exp"]
    by_kind = {a.kind: a for a in _alerts(client)}
    assert set(by_kind) == {"reward_drift", "srm"}
    assert by_kind["srm"].severity == "critical"
    assert by_kind["srm"].evidence["p_value"] < 0.001
    assert by_kind["srm"].evidence["observed"]["control"] > 1600
    reward = by_kind["reward_drift"].evidence
    assert reward["arm"] == "treatment"
    treatment = next(a for a in reward["arms"] if a["arm"] == "treatment")
    assert treatment["reference_mean"] == pytest.approx(0.10, abs=0.02)
    assert treatment["recent_mean"] == pytest.approx(0.25, abs=0.03)
    assert treatment["p_adjusted"] < 0.001


def test_too_few_decisions_or_a_young_experiment_is_skipped(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]], settings: Settings
) -> None:
    create_experiment("few")
    create_experiment("young")
    now = utcnow()
    _history(client, "few", now, recent_country=[0.0, 0.0, 1.0], n=150)
    backdate(_sessions(client), "young", now - timedelta(hours=2))
    checks = {c.experiment: c for c in _run(client, settings, now)}
    assert checks["few"].status == "skipped"
    assert "too few decisions: 150" in (checks["few"].reason or "")
    assert checks["young"].status == "skipped"
    assert "overlaps" in (checks["young"].reason or "")
    assert _alerts(client) == []


def test_only_running_experiments_are_checked_and_one_failure_stops_nothing(
    client: TestClient,
    create_experiment: Callable[..., dict[str, Any]],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_experiment("broken")
    create_experiment("fine")
    create_experiment("draft", start=False)
    now = utcnow()
    _history(client, "fine", now, recent_country=[0.2, 0.3, 0.5])
    measure = drift._measure

    def flaky(session: Any, experiment: Any, now: datetime, config: Settings) -> Any:
        if experiment.key == "broken":
            raise RuntimeError("boom")
        return measure(session, experiment, now, config)

    monkeypatch.setattr(drift, "_measure", flaky)
    checks = {c.experiment: c for c in _run(client, settings, now)}
    assert set(checks) == {"broken", "fine"}
    assert checks["broken"].status == "failed"
    assert checks["broken"].reason == "boom"
    assert checks["fine"].alerts == ["psi_drift:fine:user.country"]


def test_the_pass_is_throttled_per_session_factory(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]], settings: Settings
) -> None:
    create_experiment("exp")
    sessions, now = _sessions(client), utcnow()
    first = drift.run_drift_checks(sessions=sessions, now=now, settings=settings)
    assert [c.experiment for c in first] == ["exp"]
    soon = now + timedelta(seconds=settings.drift_check_interval_s - 1)
    assert drift.run_drift_checks(sessions=sessions, now=soon, settings=settings) == []
    later = now + timedelta(seconds=settings.drift_check_interval_s)
    assert len(drift.run_drift_checks(sessions=sessions, now=later, settings=settings)) == 1


def test_contexts_are_flattened_and_small_integer_features_compared_by_value() -> None:
    assert drift.flatten({"user": {"country": "DE"}, "device": "m"}) == {
        "user.country": "DE",
        "device": "m",
    }
    assert drift.flatten(None) == {}
    assert drift.feature_psi([1, 2, 3] * 50, [1, 2, 3] * 50).kind == "categorical"
    assert drift.feature_psi(list(range(100)), list(range(100))).kind == "numeric"
    assert drift.feature_psi([True, False] * 10, [True] * 20).kind == "categorical"
    # A feature that stops being sent: its "(missing)" share jumps.
    assert drift.feature_psi(list(range(300)), [None] * 300).band == "significant"


def test_long_keys_are_shortened_to_fit_the_column() -> None:
    key = drift._alert_key("psi_drift", "e" * 64, "n" * 64 + "." + "f" * 64)
    assert len(key) == drift.MAX_KEY
    assert key != drift._alert_key("psi_drift", "e" * 64, "n" * 64 + "." + "g" * 64)
