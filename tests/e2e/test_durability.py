"""kill -9 loses nothing acknowledged: every decision and outcome that got a 200 is stored."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, ADMIN_KEY, experiment_body
from tests.e2e.server import Server

pytestmark = pytest.mark.slow


def test_acknowledged_decisions_and_outcomes_survive_kill_9(tmp_path: Path) -> None:
    database = tmp_path / "croupier.db"
    server = Server(
        {"CROUPIER_DATABASE_URL": f"sqlite:///{database}", "CROUPIER_ADMIN_KEY": ADMIN_KEY},
        tmp_path / "server.log",
    )
    acknowledged: list[str] = []
    outcomes: list[str] = []
    stop = threading.Event()
    try:
        base = server.url
        assert (
            httpx.post(f"{base}/v1/experiments", json=experiment_body(), headers=ADMIN).status_code
            == 201
        )
        assert httpx.post(f"{base}/v1/experiments/exp/start", headers=ADMIN).status_code == 200

        def hammer(worker: int) -> None:
            with httpx.Client(base_url=base, headers=ADMIN, timeout=5) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = http.post(
                            "/v1/experiments/exp/decisions", json={"unit_id": f"w{worker}-{i}"}
                        )
                        if r.status_code == 200:
                            decision_id = r.json()["decision_id"]
                            acknowledged.append(decision_id)
                            o = http.post(
                                "/v1/outcomes", json={"decision_id": decision_id, "value": 1}
                            )
                            if o.status_code == 200 and o.json()["status"] == "accepted":
                                outcomes.append(decision_id)
                    except httpx.HTTPError:
                        return  # the server is gone

        threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        server.kill()
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        stop.set()
        server.stop()
    assert len(acknowledged) > 100
    with sqlite3.connect(database) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM decisions")}
        stored_outcomes = [row[0] for row in conn.execute("SELECT decision_id FROM outcomes")]
    assert set(acknowledged) <= stored
    assert set(outcomes) <= set(stored_outcomes)
    assert len(stored_outcomes) == len(set(stored_outcomes))
