"""Fallback: with the database away or slower than the budget, decide answers control (or the
winner) with `fallback: true`, exposures and outcomes go to the local spool, and the replay
stores every acknowledged one exactly once when the database is back."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from app.decisions import fallback as fallback_module
from app.decisions.fallback import Fallback
from app.decisions.spool import Spool, decode, encode
from app.decisions.writer import DecisionWriter
from app.main import create_app
from app.outcomes import router as outcomes_router
from tests.conftest import ADMIN, experiment_body, make_settings

BUDGET_MS = 100


def with_fallback(app: FastAPI) -> FastAPI:
    """What app.main's lifespan does (until it does): open the spool, start the replay loop,
    stop both at shutdown. A no-op once the lifespan installs the fallback itself."""
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with original(app):
            if getattr(app.state, "fallback", None) is not None:
                yield
                return
            runtime = app.state.runtime
            fallback = Fallback(
                settings=runtime.settings,
                engine=runtime.engine,
                sessions=runtime.sessions,
                policies=runtime.policies,
            )
            fallback.open()
            app.state.fallback = fallback
            fallback.start()
            try:
                yield
            finally:
                await fallback.stop()

    app.router.lifespan_context = lifespan
    return app


class Outage:
    """Turns the database 'off' for the service: every write fails as a lost connection
    would, and the replay's probe too. Reads of the policy cache are left alone (they are
    served from memory anyway)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        original_write = DecisionWriter._write
        original_record = outcomes_router._record
        original_probe = Fallback._probe
        original_replay = Fallback._replay

        def failing(what: str) -> OperationalError:
            return OperationalError(what, {}, sqlite3.OperationalError("disk I/O error"))

        def write(writer: DecisionWriter, batch: Any) -> Any:
            if self.down:
                raise sqlite3.OperationalError("disk I/O error")
            return original_write(writer, batch)

        def record(runtime: Any, items: Any, *, batch: bool) -> Any:
            if self.down:
                raise failing("INSERT INTO outcomes")
            return original_record(runtime, items, batch=batch)

        def probe(fallback: Fallback) -> None:
            if self.down:
                raise failing("SELECT 1")
            original_probe(fallback)

        def replay(fallback: Fallback, files: Any) -> None:
            if self.down:
                raise failing("INSERT INTO decisions")
            original_replay(fallback, files)

        monkeypatch.setattr(DecisionWriter, "_write", write)
        monkeypatch.setattr(outcomes_router, "_record", record)
        monkeypatch.setattr(Fallback, "_probe", probe)
        monkeypatch.setattr(Fallback, "_replay", replay)


@pytest.fixture
def replay_interval() -> float:
    return 3600.0  # the loop stays out of the way: tests replay explicitly (one runs the loop)


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch, replay_interval: float) -> Outage:
    monkeypatch.setattr(fallback_module, "REPLAY_INTERVAL_S", replay_interval)
    return Outage(monkeypatch)


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def fb_client(sqlite_url: str, spool_dir: Path, outage: Outage) -> Iterator[TestClient]:
    settings = make_settings(sqlite_url, db_budget_ms=BUDGET_MS, spool_dir=str(spool_dir))
    with TestClient(with_fallback(create_app(settings))) as client:
        yield client


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlite_url)
    yield engine
    engine.dispose()


def fallback_of(client: TestClient) -> Fallback:
    fallback: Fallback = client.app.state.fallback  # type: ignore[attr-defined]
    return fallback


def start(client: TestClient, key: str = "exp", **overrides: Any) -> None:
    r = client.post("/v1/experiments", json=experiment_body(key, **overrides), headers=ADMIN)
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/experiments/{key}/start", headers=ADMIN)
    assert r.status_code == 200, r.text


def decide(client: TestClient, unit: str, key: str = "exp", **extra: Any) -> dict[str, Any]:
    r = client.post(
        f"/v1/experiments/{key}/decisions", json={"unit_id": unit, **extra}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql)))


def test_outage_answers_control_spools_and_replays_everything_exactly_once(
    fb_client: TestClient, outage: Outage, db: Engine
) -> None:
    start(fb_client)
    healthy = decide(fb_client, "warm")  # the experiment is now in this process's memory
    assert healthy["fallback"] is False
    outage.down = True

    answers = [decide(fb_client, f"u{i}") for i in range(20)]
    assert {(a["variant"], a["propensity"], a["fallback"], a["experimental"]) for a in answers} == {
        ("control", 1.0, True, False)
    }
    batch = fb_client.post(
        "/v1/experiments/exp/decisions/batch",
        json={"items": [{"unit_id": f"b{i}"} for i in range(5)]},
        headers=ADMIN,
    )
    assert batch.status_code == 200
    answers += batch.json()["items"]
    assert all(a["fallback"] for a in answers)

    one = fb_client.post(
        "/v1/outcomes", json={"decision_id": answers[0]["decision_id"], "value": 1}, headers=ADMIN
    )
    assert one.status_code == 200
    assert one.json()["status"] == "spooled"
    many = fb_client.post(
        "/v1/outcomes/batch",
        json={"items": [{"decision_id": a["decision_id"], "value": 1} for a in answers[1:]]},
        headers=ADMIN,
    )
    assert many.status_code == 200
    assert many.json()["counts"]["spooled"] == len(answers) - 1
    assert {item["status"] for item in many.json()["items"]} == {"spooled"}
    # The healthy decision's outcome too: spooled like the others while degraded.
    fb_client.post(
        "/v1/outcomes", json={"decision_id": healthy["decision_id"], "value": 0}, headers=ADMIN
    )

    ready = fb_client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    details = body["checks"]["fallback"]
    assert details["degraded"] is True
    assert details["since"] is not None
    assert "disk I/O error" in details["last_error"]
    assert details["spool"]["records"] == len(answers) + len(answers) + 1
    assert rows(db, "SELECT count(*) FROM decisions")[0][0] == 1  # only the healthy one

    fallback = fallback_of(fb_client)
    with pytest.raises(OperationalError):
        fallback.replay_once()  # still down: everything stays spooled
    assert fallback.degraded

    outage.down = False
    fallback.replay_once()
    assert not fallback.degraded
    assert fb_client.get("/readyz").json()["status"] == "ready"
    stored = {r[0]: r for r in rows(db, "SELECT id, fallback, experimental, arm FROM decisions")}
    assert set(stored) == {a["decision_id"] for a in answers} | {healthy["decision_id"]}
    assert all(stored[a["decision_id"]][1:] == (1, 0, 0) for a in answers)
    outcomes = [r[0] for r in rows(db, "SELECT decision_id FROM outcomes")]
    assert sorted(outcomes) == sorted(
        [a["decision_id"] for a in answers] + [healthy["decision_id"]]
    )

    fallback.replay_once()  # nothing left: changes nothing
    assert rows(db, "SELECT count(*) FROM outcomes")[0][0] == len(outcomes)
    assert list(Path(fallback.spool.directory).glob("*.spool")) == [fallback.spool.active_path]

    # Healthy again: decisions come from the policy and are written as usual.
    assert decide(fb_client, "after")["fallback"] is False


def test_a_concluded_experiment_falls_back_to_its_winner(
    fb_client: TestClient, outage: Outage
) -> None:
    start(fb_client)
    r = fb_client.post("/v1/experiments/exp/conclude", json={"winner": "treatment"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    decide(fb_client, "warm")
    outage.down = True
    answer = decide(fb_client, "u1")
    assert (answer["variant"], answer["fallback"], answer["propensity"]) == ("treatment", True, 1.0)


def test_an_experiment_not_in_memory_gets_503_while_degraded(
    fb_client: TestClient, outage: Outage
) -> None:
    start(fb_client, "known")
    start(fb_client, "unknown")
    decide(fb_client, "warm", key="known")
    fallback_of(fb_client)._policies.invalidate("unknown")
    outage.down = True
    assert decide(fb_client, "u1", key="known")["fallback"] is True  # now degraded
    r = fb_client.post("/v1/experiments/unknown/decisions", json={"unit_id": "u"}, headers=ADMIN)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"


def test_a_write_slower_than_the_budget_is_answered_from_the_fallback_and_if_it_commits_later_the_log_holds_what_was_served(  # noqa: E501
    fb_client: TestClient, outage: Outage, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(
        fb_client,
        variants=[
            {"key": "control", "payload": 1, "is_control": True, "weight": 0.01},
            {"key": "treatment", "payload": 2, "weight": 0.99},
        ],
    )
    decide(fb_client, "warm")
    committed = threading.Event()
    original = DecisionWriter._write

    def slow_write(writer: DecisionWriter, batch: Any) -> Any:
        result = original(writer, batch)  # commits...
        committed.set()
        time.sleep(BUDGET_MS / 1000 * 3)  # ... but answers after the budget
        return result

    monkeypatch.setattr(DecisionWriter, "_write", slow_write)
    answer = decide(fb_client, "slow-unit")
    assert (answer["variant"], answer["fallback"]) == ("control", True)
    assert committed.wait(5)
    # The policy's row (treatment) committed after the budget ran out...
    row = rows(db, f"SELECT arm, fallback FROM decisions WHERE id = '{answer['decision_id']}'")
    assert [tuple(r) for r in row] == [(1, 0)]
    monkeypatch.setattr(DecisionWriter, "_write", original)
    fallback = fallback_of(fb_client)
    fallback.replay_once()
    fallback.replay_once()
    # ... and replay corrects it, once: the unit was served control, by the fallback.
    row = rows(
        db,
        "SELECT arm, fallback, experimental, propensity FROM decisions "
        f"WHERE id = '{answer['decision_id']}'",
    )
    assert [tuple(r) for r in row] == [(0, 1, 0, 1.0)]


def test_a_client_decision_id_retried_during_the_outage_is_stored_once(
    fb_client: TestClient, outage: Outage, db: Engine
) -> None:
    start(fb_client)
    decide(fb_client, "warm")
    outage.down = True
    first = decide(fb_client, "u1", decision_id="req-1")
    again = decide(fb_client, "u1", decision_id="req-1")
    assert first == again
    outage.down = False
    fallback_of(fb_client).replay_once()
    assert rows(db, "SELECT count(*), max(fallback) FROM decisions WHERE id = 'req-1'") == [(1, 1)]


@pytest.mark.parametrize("replay_interval", [0.05])
def test_the_replay_loop_recovers_on_its_own(
    fb_client: TestClient, outage: Outage, db: Engine
) -> None:
    start(fb_client)
    decide(fb_client, "warm")
    outage.down = True
    answer = decide(fb_client, "u1")
    assert answer["fallback"] is True
    outage.down = False
    fallback = fallback_of(fb_client)
    deadline = time.monotonic() + 10
    while fallback.degraded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not fallback.degraded
    assert rows(db, f"SELECT count(*) FROM decisions WHERE id = '{answer['decision_id']}'") == [
        (1,)
    ]


def orphan(spool_dir: Path, name: str, content: bytes) -> Path:
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"{name}.spool"
    path.write_bytes(content)
    return path


def test_a_torn_tail_and_a_corrupt_line_are_skipped_and_a_dead_process_spool_is_replayed(
    fb_client: TestClient, outage: Outage, db: Engine, spool_dir: Path
) -> None:
    start(fb_client)
    decide(fb_client, "warm")
    outage.down = True
    answers = [decide(fb_client, f"u{i}") for i in range(3)]
    outage.down = False
    fallback = fallback_of(fb_client)
    own = fallback.spool.active_path
    assert own is not None
    good = own.read_bytes().splitlines(keepends=True)
    assert len(good) == 3
    # A dead process's file: one good record, one corrupt (checksum), a torn last line.
    corrupt = good[1].replace(b'"unit_id":"u1"', b'"unit_id":"XX"')
    other = orphan(spool_dir, "deadhost-1-1-aa", good[0] + corrupt + good[2][:40])
    fallback.replay_once()
    assert not other.exists()
    ids = {r[0] for r in rows(db, "SELECT id FROM decisions")}
    assert {a["decision_id"] for a in answers} <= ids
    assert rows(db, "SELECT count(*) FROM decisions WHERE unit_id = 'XX'") == [(0,)]


def spool_during_outage(client: TestClient, outage: Outage, n: int) -> list[dict[str, Any]]:
    """Warm the experiment, cut the database off, then decide for n units and report an
    outcome for each: all of it goes to the spool."""
    start(client)
    decide(client, "warm")
    outage.down = True
    answers = [decide(client, f"u{i}") for i in range(n)]
    for a in answers:
        r = client.post(
            "/v1/outcomes", json={"decision_id": a["decision_id"], "value": 1}, headers=ADMIN
        )
        assert r.json()["status"] == "spooled"
    return answers


def test_a_crash_after_replay_committed_but_before_the_file_was_removed_duplicates_nothing(
    fb_client: TestClient, outage: Outage, db: Engine, spool_dir: Path
) -> None:
    spool_during_outage(fb_client, outage, 5)
    fallback = fallback_of(fb_client)
    own = fallback.spool.active_path
    assert own is not None
    saved = own.read_bytes()
    outage.down = False
    fallback.replay_once()
    # The crash: the replayed file is back, as if the process died before removing it.
    orphan(spool_dir, "crashed-2-2-bb", saved)
    fallback.replay_once()
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM decisions") == [(6, 6)]
    assert rows(db, "SELECT count(*), count(DISTINCT decision_id) FROM outcomes") == [(5, 5)]


def test_a_crash_in_the_middle_of_a_replay_loses_and_duplicates_nothing(
    fb_client: TestClient,
    outage: Outage,
    db: Engine,
    spool_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
) -> None:
    spool_during_outage(fb_client, outage, 5)
    outage.down = False
    fallback = fallback_of(fb_client)

    def die(*_: Any) -> Any:
        raise RuntimeError("killed between decisions and outcomes")

    monkeypatch.setattr(Fallback, "_replay_outcomes", die)
    with pytest.raises(RuntimeError):
        fallback.replay_once()
    assert rows(db, "SELECT count(*) FROM decisions") == [(6,)]
    assert rows(db, "SELECT count(*) FROM outcomes") == [(0,)]
    # The process dies: its files (still locked by it) are left; a new process replays them.
    files = list(spool_dir.glob("*.spool"))
    survivor = spool_dir.parent / "copy"
    survivor.mkdir()
    for f in files:
        shutil.copy(f, survivor / f.name)
    monkeypatch.undo()
    settings = make_settings(sqlite_url, spool_dir=str(survivor))
    runtime = fb_client.app.state.runtime  # type: ignore[attr-defined]
    successor = Fallback(
        settings=settings,
        engine=runtime.engine,
        sessions=runtime.sessions,
        policies=runtime.policies,
    )
    successor.open()
    try:
        successor.replay_once()
        successor.replay_once()
    finally:
        successor.spool.close()
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM decisions") == [(6, 6)]
    assert rows(db, "SELECT count(*), count(DISTINCT decision_id) FROM outcomes") == [(5, 5)]
    assert list(survivor.glob("*.spool")) == []


def test_replayed_outcomes_keep_their_received_time_and_invalid_ones_are_dropped(
    fb_client: TestClient, outage: Outage, db: Engine
) -> None:
    start(fb_client, policy={"type": "thompson", "reward": "bernoulli"})
    decide(fb_client, "warm")
    outage.down = True
    answer = decide(fb_client, "u1")
    for value in (1, 5):  # 5 is outside a Bernoulli reward: 422 live, dropped on replay
        r = fb_client.post(
            "/v1/outcomes",
            json={"decision_id": answer["decision_id"], "value": value},
            headers=ADMIN,
        )
        assert r.json()["status"] == "spooled"
    r = fb_client.post("/v1/outcomes", json={"decision_id": "nope", "value": 1}, headers=ADMIN)
    assert r.json()["status"] == "spooled"
    outage.down = False
    fallback_of(fb_client).replay_once()
    assert rows(db, "SELECT decision_id, value, late FROM outcomes") == [
        (answer["decision_id"], 1.0, 0)
    ]
    assert fallback_of(fb_client).spool.records == 0  # the unknown one was dropped


def test_the_spool_file_format_detects_torn_and_corrupt_lines() -> None:
    a, b = encode({"kind": "decision", "n": 1}), encode({"kind": "outcome", "n": 2})
    assert decode(a + b) == ([{"kind": "decision", "n": 1}, {"kind": "outcome", "n": 2}], 0)
    assert decode(a + b[:-1]) == ([{"kind": "decision", "n": 1}], 1)  # torn: no newline
    assert decode(a[:5] + b"\n" + b) == ([{"kind": "outcome", "n": 2}], 1)
    assert decode(a.replace(b'"n":1', b'"n":7')) == ([], 1)  # checksum mismatch
    assert decode(b"") == ([], 0)


def test_concurrent_appends_are_all_durable_and_whole(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", prefix="t")
    spool.open()
    threads = [
        threading.Thread(
            target=lambda w=w: [spool.append([{"w": w, "i": i}] * 2) for i in range(100)]
        )
        for w in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert spool.records == 1600
    path = spool.active_path
    assert path is not None
    records, bad = decode(path.read_bytes())
    assert (len(records), bad) == (1600, 0)
    # Another process cannot claim a live process's file, and rotation hands it over.
    other = Spool(tmp_path / "s", prefix="u")
    other.open()
    assert other.claim_orphans() == []
    rotated = spool.rotate()
    assert rotated is not None
    assert rotated.read()[0] == records
    spool.close()
    other.close()
    rotated.close()  # the process "dies": now it is an orphan anyone may claim
    third = Spool(tmp_path / "s", prefix="v")
    third.open()
    claimed = third.claim_orphans()
    assert [f.path for f in claimed] == [rotated.path]
    for f in claimed:
        third.discard(f)
    third.close()
    assert list((tmp_path / "s").glob("*.spool")) == []


def test_an_outcome_slower_than_the_budget_is_spooled_and_stored_once(
    fb_client: TestClient, outage: Outage, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(fb_client)
    answer = decide(fb_client, "u1")
    original = outcomes_router._record

    def slow_record(runtime: Any, items: Any, *, batch: bool) -> Any:
        result = original(runtime, items, batch=batch)  # commits, then answers too late
        time.sleep(BUDGET_MS / 1000 * 3)
        return result

    monkeypatch.setattr(outcomes_router, "_record", slow_record)
    r = fb_client.post(
        "/v1/outcomes", json={"decision_id": answer["decision_id"], "value": 1}, headers=ADMIN
    )
    assert r.json()["status"] == "spooled"
    assert fb_client.get("/readyz").json()["status"] == "degraded"
    time.sleep(BUDGET_MS / 1000 * 4)
    monkeypatch.setattr(outcomes_router, "_record", original)
    fallback_of(fb_client).replay_once()
    assert rows(db, "SELECT count(*) FROM outcomes") == [(1,)]
    assert fb_client.get("/readyz").json()["status"] == "ready"
