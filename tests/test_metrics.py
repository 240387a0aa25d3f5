"""GET /metrics: Prometheus exposition of counters, heartbeats and per-experiment state.

main.py does not include the router yet, so each test includes it into its own app.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from app import metrics, metrics_router
from app.experiments.models import Experiment
from app.main import create_app
from app.rollouts.models import Rollout
from tests.conftest import ADMIN, experiment_body, make_settings

ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_app(url: str, **overrides: Any) -> FastAPI:
    app = create_app(make_settings(url, **overrides))
    if not any(getattr(r, "path", None) == "/metrics" for r in app.router.routes):
        app.include_router(metrics_router.router)
    return app


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(metrics_app(sqlite_url, metrics_cache_ttl_s=0.0)) as test_client:
        yield test_client


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    response = client.get("/metrics", headers=ADMIN if headers is None else headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def start(client: TestClient, key: str, **overrides: Any) -> None:
    created = client.post("/v1/experiments", json=experiment_body(key, **overrides), headers=ADMIN)
    assert created.status_code == 201, created.text
    started = client.post(f"/v1/experiments/{key}/start", headers=ADMIN)
    assert started.status_code == 200, started.text


def sessions_of(client: TestClient) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = client.app.state.runtime.sessions  # type: ignore[attr-defined]
    return factory


def test_the_exposition_parses_and_the_counters_move_with_the_record_hooks(
    client: TestClient,
) -> None:
    before = scrape(client)
    metrics.record_decisions("m-exp", ["a", "b", "a"], fallback=False)
    metrics.record_decisions("m-exp", ["a"], fallback=True)
    metrics.record_outcomes(["accepted", "accepted", "duplicate", "late", "unknown_decision"])
    metrics.record_decide_latency(0.003)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)

    total = "croupier_decisions_total"
    assert moved(total, experiment="m-exp", variant="a", fallback="false") == 2
    assert moved(total, experiment="m-exp", variant="b", fallback="false") == 1
    assert moved(total, experiment="m-exp", variant="a", fallback="true") == 1
    assert moved("croupier_outcomes_total", status="accepted") == 2
    for status in ("duplicate", "late", "unknown_decision"):
        assert moved("croupier_outcomes_total", status=status) == 1
    assert moved("croupier_decide_latency_seconds_count") == 1
    assert moved("croupier_decide_latency_seconds_bucket", le="0.005") == 1
    assert moved("croupier_decide_latency_seconds_bucket", le="0.0025") == 0


def test_status_version_and_learner_lag_follow_an_experiment_started_through_the_api(
    client: TestClient,
) -> None:
    client.post("/v1/experiments", json=experiment_body("drafted"), headers=ADMIN)
    start(
        client,
        "bandit",
        policy={
            "type": "thompson",
            "reward": "bernoulli",
            "min_probability": 0.05,
            "update_interval_s": 30,
        },
    )
    samples = scrape(client)
    assert value(samples, "croupier_metrics_database_ok") == 1
    assert value(samples, "croupier_policy_version", experiment="drafted") == 0
    assert value(samples, "croupier_policy_version", experiment="bandit") == 1
    assert value(samples, "croupier_experiment_status", experiment="bandit", status="running") == 1
    assert value(samples, "croupier_experiment_status", experiment="bandit", status="draft") == 0
    assert value(samples, "croupier_experiment_status", experiment="drafted", status="draft") == 1
    lag = value(samples, "croupier_learner_lag_seconds", experiment="bandit")
    assert lag is not None
    assert 0 <= lag < 60
    assert value(samples, "croupier_learner_update_interval_seconds", experiment="bandit") == 30
    assert value(samples, "croupier_learner_lag_seconds", experiment="drafted") is None
    assert value(samples, "croupier_rollout_step", experiment="bandit") == 0

    assert client.post("/v1/experiments/bandit/pause", headers=ADMIN).status_code == 200
    samples = scrape(client)
    assert value(samples, "croupier_experiment_status", experiment="bandit", status="paused") == 1
    assert value(samples, "croupier_experiment_status", experiment="bandit", status="running") == 0
    assert value(samples, "croupier_learner_lag_seconds", experiment="bandit") is None


def test_rollout_step_is_the_latest_rollouts_step_while_it_ramps(client: TestClient) -> None:
    start(client, "ab")
    start(client, "other")
    with sessions_of(client).begin() as session:
        exp_id = session.scalar(select(Experiment.id).where(Experiment.key == "ab"))
        assert exp_id is not None
        session.add(
            Rollout(
                experiment_id=exp_id,
                state="cancelled",
                winner="treatment",
                step=4,
                pre_rollout_version=1,
            )
        )
        session.add(
            Rollout(
                experiment_id=exp_id,
                state="ramping",
                winner="treatment",
                step=1,
                pre_rollout_version=1,
            )
        )
    samples = scrape(client)
    assert value(samples, "croupier_rollout_step", experiment="ab") == 2
    assert value(samples, "croupier_rollout_step", experiment="other") == 0

    with sessions_of(client).begin() as session:
        latest = session.scalar(select(Rollout).order_by(Rollout.id.desc()).limit(1))
        assert latest is not None
        latest.state, latest.step = "awaiting_approval", 2
    assert value(scrape(client), "croupier_rollout_step", experiment="ab") == 3

    with sessions_of(client).begin() as session:
        latest = session.scalar(select(Rollout).order_by(Rollout.id.desc()).limit(1))
        assert latest is not None
        latest.state = "completed"
    assert value(scrape(client), "croupier_rollout_step", experiment="ab") == 0


def test_heartbeats_give_pass_timestamps_and_the_controllers_lag(client: TestClient) -> None:
    now = datetime.now(UTC)
    metrics.mark_learner_pass(now)
    metrics.mark_controller_pass(now - timedelta(seconds=30))
    samples = scrape(client)
    learner = value(samples, "croupier_learner_last_pass_timestamp_seconds")
    assert learner == pytest.approx(now.timestamp())
    controller = value(samples, "croupier_controller_last_pass_timestamp_seconds")
    assert controller == pytest.approx(now.timestamp() - 30)
    lag = value(samples, "croupier_controller_lag_seconds")
    assert lag is not None
    assert 30 <= lag < 90
    metrics.mark_controller_pass()  # the clock
    lag = value(scrape(client), "croupier_controller_lag_seconds")
    assert lag is not None
    assert 0 <= lag < 60


def test_metrics_need_the_read_scope_unless_public(sqlite_url: str) -> None:
    with TestClient(metrics_app(sqlite_url)) as client:
        assert client.get("/metrics").status_code == 401
        keys = {}
        for scope in ("read", "decide"):
            made = client.post("/v1/keys", json={"name": scope, "scopes": [scope]}, headers=ADMIN)
            assert made.status_code == 201, made.text
            keys[scope] = {"Authorization": f"Bearer {made.json()['key']}"}
        assert client.get("/metrics", headers=keys["decide"]).status_code == 403
        assert client.get("/metrics", headers=keys["read"]).status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    with TestClient(metrics_app(sqlite_url, metrics_public=True)) as client:
        scrape(client, headers={})


def test_scrapes_within_the_ttl_share_one_query(sqlite_url: str) -> None:
    with TestClient(metrics_app(sqlite_url, metrics_cache_ttl_s=60.0)) as client:
        start(client, "cached")
        statements: list[str] = []
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]

        def count(*args: Any) -> None:
            if args[2].lstrip().upper().startswith("SELECT"):  # not the engine's own BEGIN
                statements.append(args[2])

        event.listen(engine, "before_cursor_execute", count)
        try:
            first = scrape(client)
            for _ in range(5):
                scrape(client)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(statements) == 1, statements
        assert value(first, "croupier_policy_version", experiment="cached") == 1
        # Within the TTL the cached state is served: the pause shows at the next read.
        assert client.post("/v1/experiments/cached/pause", headers=ADMIN).status_code == 200
        samples = scrape(client)
        status = value(samples, "croupier_experiment_status", experiment="cached", status="running")
        assert status == 1


def test_an_unreadable_database_still_gives_the_counters(client: TestClient) -> None:
    class Broken:
        def __call__(self) -> Session:
            raise RuntimeError("database gone")

    collector = metrics.DatabaseCollector()
    collector.bind(Broken(), ttl_s=0.0)  # type: ignore[arg-type]
    families = {family.name: family for family in collector.collect()}
    assert families["croupier_metrics_database_ok"].samples[0].value == 0
    assert not families["croupier_policy_version"].samples
    # The archived leave: only the statuses an exposed experiment can have.
    start(client, "gone")
    concluded = client.post(
        "/v1/experiments/gone/conclude", headers=ADMIN, json={"winner": "treatment"}
    )
    assert concluded.status_code == 200, concluded.text
    assert client.post("/v1/experiments/gone/archive", headers=ADMIN).status_code == 200
    samples = scrape(client)
    assert value(samples, "croupier_policy_version", experiment="gone") is None
    assert value(samples, "croupier_metrics_database_ok") == 1


def test_record_decisions_is_cheap() -> None:
    started = time.perf_counter()
    for _ in range(10_000):
        metrics.record_decisions("cheap", ["a"], fallback=False)
    assert (time.perf_counter() - started) / 10_000 < 50e-6  # generous: a few µs expected


MULTIPROCESS_SCRIPT = """
import os, sys
from app import metrics
assert metrics.MULTIPROCESS
if sys.argv[1] == "record":
    metrics.record_decisions("mp", ["a", "a"], fallback=False)
    metrics.record_outcomes(["accepted"])
    metrics.mark_controller_pass(float(sys.argv[2]))
else:
    sys.stdout.write(metrics.render().decode())
"""


def test_multiprocess_mode_sums_the_workers_counters(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_SCRIPT, *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    now = time.time()
    run("record", str(now - 100))
    run("record", str(now - 20))
    samples = parse(run("render"))
    decisions = value(
        samples, "croupier_decisions_total", experiment="mp", variant="a", fallback="false"
    )
    assert decisions == 4
    assert value(samples, "croupier_outcomes_total", status="accepted") == 2
    latest = value(samples, "croupier_controller_last_pass_timestamp_seconds")
    assert latest == pytest.approx(now - 20)
    lag = value(samples, "croupier_controller_lag_seconds")
    assert lag is not None
    assert 20 <= lag < 80


def test_monitoring_doc_lists_every_series_this_module_defines() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    families = [
        *metrics.DECISIONS.describe(),
        *metrics.DECIDE_LATENCY.describe(),
        *metrics.OUTCOMES.describe(),
        *metrics.HeartbeatCollector().describe(),
        *metrics.DATABASE.describe(),
    ]
    for family in families:
        assert f"`{family.name}" in doc, family.name
