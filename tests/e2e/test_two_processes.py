"""Two server processes on one PostgreSQL under concurrent decisions and outcomes (with
retries of the same ids sent to both): every acknowledged decision and outcome is stored
exactly once, and exactly one learner ran."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import migrate
from tests.conftest import ADMIN, ADMIN_KEY, PG_URL, experiment_body
from tests.e2e.server import Server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def fresh_database() -> Iterator[str]:
    assert PG_URL
    name = f"croupier_e2e_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_two_processes_store_everything_once_and_one_learner_runs(
    fresh_database: str, tmp_path: Path
) -> None:
    env = {
        "CROUPIER_DATABASE_URL": fresh_database,
        "CROUPIER_ADMIN_KEY": ADMIN_KEY,
        "CROUPIER_LEARNER_TICK_S": "0.2",
        "CROUPIER_LEARNER_SAFETY_LAG_S": "0.5",
        "CROUPIER_POLICY_CHECK_INTERVAL_S": "0.2",
    }
    servers = [Server(env, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        body = experiment_body(
            policy={"type": "thompson", "update_interval_s": 1},
            variants=[{"key": "a"}, {"key": "b"}],
            reward_window_s=1,
        )
        assert (
            httpx.post(f"{servers[0].url}/v1/experiments", json=body, headers=ADMIN).status_code
            == 201
        )
        assert (
            httpx.post(f"{servers[1].url}/v1/experiments/exp/start", headers=ADMIN).status_code
            == 200
        )

        decisions: dict[str, str] = {}  # decision_id -> variant, as acknowledged
        accepted: list[str] = []
        lock = threading.Lock()
        errors: list[str] = []

        def worker(n: int) -> None:
            rng = random.Random(n)
            clients = [httpx.Client(base_url=s.url, headers=ADMIN, timeout=10) for s in servers]
            try:
                for i in range(120):
                    decision_id = f"w{n}-{i}"
                    # The same id to both processes, as a retrying client would.
                    answers = [
                        c.post(
                            "/v1/experiments/exp/decisions",
                            json={"unit_id": f"u{n}-{i}", "decision_id": decision_id},
                        )
                        for c in rng.sample(clients, 2)
                    ]
                    if rng.random() < 0.5:
                        answers.append(
                            clients[i % 2].post(
                                "/v1/experiments/exp/decisions", json={"unit_id": f"g{n}-{i}"}
                            )
                        )
                    for answer in answers:
                        if answer.status_code != 200:
                            errors.append(answer.text)
                            continue
                        data = answer.json()
                        with lock:
                            previous = decisions.setdefault(data["decision_id"], data["variant"])
                        if previous != data["variant"]:
                            errors.append(f"{decision_id}: {previous} vs {data['variant']}")
                    outcome = {"decision_id": decision_id, "value": float(rng.random() < 0.3)}
                    for c in clients:  # both processes get the same outcome
                        r = c.post("/v1/outcomes", json=outcome)
                        if r.status_code != 200:
                            errors.append(r.text)
                        elif r.json()["status"] == "accepted":
                            with lock:
                                accepted.append(decision_id)
            finally:
                for c in clients:
                    c.close()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        engine = create_engine(fresh_database)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # windows close, the learner catches up
            with engine.connect() as conn:
                counted = conn.execute(
                    text("SELECT max(decisions_counted) FROM policy_versions")
                ).scalar_one()
            if counted == len(decisions):
                break
            time.sleep(0.25)
    finally:
        for s in servers:
            s.stop()

    try:
        with engine.connect() as conn:
            stored = dict(
                conn.execute(
                    text(
                        "SELECT d.id, v.key FROM decisions d JOIN variants v ON v.id = d.variant_id"
                    )
                ).all()
            )
            outcome_rows = [r[0] for r in conn.execute(text("SELECT decision_id FROM outcomes"))]
            learners = (
                conn.execute(text("SELECT DISTINCT learner FROM policy_versions WHERE number > 1"))
                .scalars()
                .all()
            )
            numbers = (
                conn.execute(text("SELECT number FROM policy_versions ORDER BY number"))
                .scalars()
                .all()
            )
            final = conn.execute(
                text("SELECT decisions_counted FROM policy_versions ORDER BY number DESC LIMIT 1")
            ).scalar_one()
    finally:
        engine.dispose()
    assert stored == decisions  # every acknowledged decision, once, with the variant served
    assert sorted(outcome_rows) == sorted(set(accepted))  # each outcome stored once
    assert len(outcome_rows) == 6 * 120
    assert len(learners) == 1, learners  # exactly one learner ran
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 2
    assert final == len(stored)
