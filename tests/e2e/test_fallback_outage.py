"""A real server loses its database mid-traffic and gets it back: decisions keep coming (with
`fallback: true`), and afterwards every acknowledged exposure and outcome is stored exactly once.

PostgreSQL: the server reaches the database through a TCP proxy written here, which the test
cuts (every connection closed, new ones closed at once) and restores, so PostgreSQL itself is
never stopped. SQLite: another connection holds the write lock, so every write waits past the
budget; releasing it is the recovery.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from app import migrate
from tests.conftest import ADMIN, ADMIN_KEY, TABLES, experiment_body
from tests.e2e.server import ROOT, Server, free_port

pytestmark = pytest.mark.slow


def make_app() -> Any:
    """The app as `croupier serve` builds it, with the fallback installed if app.main does
    not install it yet (uvicorn --factory entry point)."""
    from app.main import create_app
    from tests.test_fallback import with_fallback

    return with_fallback(create_app())


class _Launched(Server):
    """Like Server, but through uvicorn on `make_app` (for when app.main lacks the fallback)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CROUPIER_")}
        full_env.update({"CROUPIER_LOG_LEVEL": "warning", "CROUPIER_DEMO": "false", **env})
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.e2e.test_fallback_outage:make_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()


def serve(env: dict[str, str], log_path: Path) -> Server:
    if "Fallback" in (ROOT / "app" / "main.py").read_text():
        return Server(env, log_path)  # `croupier serve` itself
    migrate.upgrade(env["CROUPIER_DATABASE_URL"])
    return _Launched(env, log_path)


class Proxy:
    """127.0.0.1:<port> -> target, byte for byte; `cut()` drops every connection and closes
    new ones at once (what a network partition or a crashed database looks like to the
    client); `restore()` forwards again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.open = True
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self.lock:
                self.connections.difference_update((source, sink))

    def cut(self) -> None:
        self.open = False
        with self.lock:
            connections = list(self.connections)
        for s in connections:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


class Traffic:
    """Threads deciding and reporting an outcome for every decision, recording what the
    server acknowledged."""

    def __init__(self, base: str, workers: int = 4) -> None:
        self.base = base
        self.decisions: dict[str, bool] = {}  # acknowledged id -> fallback
        self.outcomes: list[str] = []  # decision ids whose outcome was acknowledged
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,)) for w in range(workers)]
        for t in self.threads:
            t.start()

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self.base, headers=ADMIN, timeout=30) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                r = http.post("/v1/experiments/exp/decisions", json={"unit_id": f"w{worker}-{i}"})
                if r.status_code != 200:
                    with self.lock:
                        self.failures.append(f"decide {r.status_code}: {r.text}")
                    time.sleep(0.05)
                    continue
                answer = r.json()
                with self.lock:
                    self.decisions[answer["decision_id"]] = answer["fallback"]
                o = http.post(
                    "/v1/outcomes", json={"decision_id": answer["decision_id"], "value": 1}
                )
                if o.status_code == 200 and o.json()["status"] in ("accepted", "spooled"):
                    with self.lock:
                        self.outcomes.append(answer["decision_id"])
                else:
                    with self.lock:
                        self.failures.append(f"outcome {o.status_code}: {o.text}")

    def fallback_count(self) -> int:
        with self.lock:
            return sum(self.decisions.values())

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def readyz(base: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/readyz", timeout=10)
    body: dict[str, Any] = r.json()
    body["code"] = r.status_code
    return body


def run_outage(base: str, cut: Callable[[], None], restore: Callable[[], None]) -> Traffic:
    assert (
        httpx.post(f"{base}/v1/experiments", json=experiment_body(), headers=ADMIN).status_code
        == 201
    )
    assert httpx.post(f"{base}/v1/experiments/exp/start", headers=ADMIN).status_code == 200
    traffic = Traffic(base)
    try:
        wait_for(lambda: len(traffic.decisions) >= 50, 20, "healthy traffic")
        cut()
        wait_for(lambda: traffic.fallback_count() >= 50, 20, "fallback answers")
        degraded = readyz(base)
        assert (degraded["code"], degraded["status"]) == (200, "degraded"), degraded
        assert degraded["checks"]["fallback"]["spool"]["records"] > 0
        restore()
        wait_for(lambda: readyz(base)["status"] == "ready", 30, "recovery")
        served = len(traffic.decisions)
        wait_for(lambda: len(traffic.decisions) >= served + 50, 20, "traffic after recovery")
    finally:
        traffic.finish()
    wait_for(lambda: readyz(base)["status"] == "ready", 30, "the last replay")
    assert traffic.failures == []
    return traffic


def check_stored(traffic: Traffic, query: Callable[[str], list[Any]]) -> None:
    stored = {row[0]: bool(row[1]) for row in query("SELECT id, fallback FROM decisions")}
    missing = set(traffic.decisions) - set(stored)
    assert not missing, f"{len(missing)} acknowledged decisions not stored"
    served_fallback = {d for d, fallback in traffic.decisions.items() if fallback}
    assert served_fallback, "the outage never reached the fallback"
    assert all(stored[d] for d in served_fallback), "a fallback answer logged as another variant"
    outcomes = [row[0] for row in query("SELECT decision_id FROM outcomes")]
    assert len(outcomes) == len(set(outcomes)), "an outcome stored twice"
    assert set(traffic.outcomes) <= set(outcomes), "an acknowledged outcome was lost"


@pytest.mark.postgres
def test_postgres_cut_off_and_back(tmp_path: Path, postgres_migrated: str) -> None:
    engine = create_engine(postgres_migrated)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    url = engine.url
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    through_proxy = url.set(host="127.0.0.1", port=proxy.port)
    server = serve(
        {
            "CROUPIER_DATABASE_URL": through_proxy.render_as_string(hide_password=False),
            "CROUPIER_ADMIN_KEY": ADMIN_KEY,
            "CROUPIER_DB_BUDGET_MS": "300",
            "CROUPIER_SPOOL_DIR": str(tmp_path / "spool"),
            "CROUPIER_POLICY_CHECK_INTERVAL_S": "0.2",
        },
        tmp_path / "server.log",
    )
    try:
        traffic = run_outage(server.url, proxy.cut, proxy.restore)
    finally:
        server.stop()
        proxy.close()

    def query(sql: str) -> list[Any]:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))

    try:
        check_stored(traffic, query)
    finally:
        engine.dispose()
    assert list((tmp_path / "spool").glob("*.spool")) == []


def test_sqlite_write_lock_held_past_the_budget_and_released(tmp_path: Path) -> None:
    sqlite_database = tmp_path / "croupier.db"
    server = serve(
        {
            "CROUPIER_DATABASE_URL": f"sqlite:///{sqlite_database}",
            "CROUPIER_ADMIN_KEY": ADMIN_KEY,
            "CROUPIER_DB_BUDGET_MS": "200",
            "CROUPIER_SQLITE_SYNCHRONOUS": "NORMAL",
        },
        tmp_path / "server.log",
    )
    blocker = sqlite3.connect(sqlite_database, isolation_level=None, check_same_thread=False)

    def cut() -> None:
        blocker.execute("BEGIN IMMEDIATE")  # every other writer now waits

    def restore() -> None:
        blocker.execute("ROLLBACK")

    try:
        traffic = run_outage(server.url, cut, restore)
    finally:
        server.stop()
        blocker.close()

    def query(sql: str) -> list[Any]:
        with sqlite3.connect(sqlite_database) as conn:
            return list(conn.execute(sql))

    check_stored(traffic, query)
    assert list((tmp_path / "croupier-spool").glob("*.spool")) == []
