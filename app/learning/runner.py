"""Runs learner passes: exactly one learner at a time across every process.

PostgreSQL: a session-level advisory lock held on a dedicated connection for as long as this
process is the learner; if the process dies the connection drops and another takes over.
SQLite: an exclusive `flock` on `<database>.learner.lock` (one machine, so one file lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.db import transaction, utcnow
from app.drift.service import run_drift_checks
from app.experiments import service as experiments_service
from app.experiments.models import Experiment
from app.learning import service as learning_service
from app.rollouts.service import Controller
from app.settings import Settings

log = logging.getLogger("croupier.learner")

# "croupier" in ASCII: the advisory-lock id every Croupier process agrees on.
ADVISORY_LOCK_ID = 0x63726F7570696572


class LeaderLock(Protocol):
    def acquire(self) -> bool: ...
    def held(self) -> bool: ...
    def release(self) -> None: ...


class PostgresLock:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self._engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        if got.scalar():
            conn.commit()
            self._conn = conn
            return True
        conn.rollback()
        conn.close()
        return False

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
            return True
        except Exception:  # connection lost: the database released the lock
            log.warning("learner lock connection lost; giving up leadership")
            self._conn = None
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                self._conn.commit()
                self._conn.close()
            self._conn = None


class FileLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = self._path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def leader_lock(engine: Engine) -> LeaderLock:
    if engine.dialect.name == "postgresql":
        return PostgresLock(engine)
    database = engine.url.database
    if not database or database == ":memory:":
        raise ValueError("the learner needs a file-backed SQLite database or PostgreSQL")
    return FileLock(Path(os.path.abspath(database) + ".learner.lock"))


def run_pass(
    *,
    sessions: sessionmaker[Session],
    safety_lag_s: float,
    learner: str,
    now: datetime | None = None,
) -> list[learning_service.PassResult]:
    """One pass over every due experiment; each experiment in its own transaction."""
    now = now or utcnow()
    with sessions() as session:
        due = learning_service.due_experiments(session=session, now=now)
    results = []
    for key in due:
        try:
            results.append(learn_one(sessions, key, now, safety_lag_s, learner))
        except Exception as exc:  # one broken experiment must not stop the others learning
            log.exception("learner: experiment %s failed", key)
            results.append(learning_service.PassResult(key, None, 0, error=str(exc)))
    roll_up_reports(sessions=sessions, now=now)
    return results


def roll_up_reports(*, sessions: sessionmaker[Session], now: datetime) -> None:
    """Keep every started experiment's report rollups up to date (app.reports.rollups): cheap
    when nothing new became final, one hour's aggregation per hour otherwise."""
    from app.reports.rollups import roll_up
    from app.reports.service import metric_specs

    with sessions() as session:
        started = list(
            session.scalars(
                select(Experiment).where(Experiment.status.in_(("running", "paused", "concluded")))
            )
        )
        work = [
            (e.key, [(name, missing) for _, name, _, missing in metric_specs(e)]) for e in started
        ]
    for key, names in work:
        try:
            roll_up(sessions=sessions, experiment_key=key, metrics=names, now=now)
        except Exception:  # a report rollup must never stop the learner
            log.exception("learner: report rollup of %s failed", key)


def learn_one(
    sessions: sessionmaker[Session], key: str, now: datetime, safety_lag_s: float, learner: str
) -> learning_service.PassResult:
    # Aggregate in a read-only session: on SQLite a write transaction would hold the one
    # write lock for the whole query and stall every decision meanwhile.
    with sessions() as session:
        experiment = experiments_service.get(session=session, key=key)
        if experiment.status != "running":
            return learning_service.PassResult(key, None, 0)
        computed = learning_service.compute(
            session=session, experiment=experiment, now=now, safety_lag_s=safety_lag_s
        )
    if isinstance(computed, learning_service.PassResult):
        return computed
    with transaction(sessions) as session:
        experiment = experiments_service.get(session=session, key=key, for_update=True)
        return learning_service.publish_proposal(
            session=session, experiment=experiment, proposal=computed, learner=learner
        )


def leader_pass(
    *,
    sessions: sessionmaker[Session],
    safety_lag_s: float,
    learner: str,
    controller: Controller | None,
    controller_interval_s: float,
    settings: Settings | None = None,
) -> None:
    """What the leader does each tick: learn; then, every `controller_interval_s`, the rollout
    controller's pass and the drift checks."""
    run_pass(sessions=sessions, safety_lag_s=safety_lag_s, learner=learner)
    metrics.mark_learner_pass()
    now = utcnow()
    if controller is None or (
        controller.last_pass is not None
        and (now - controller.last_pass).total_seconds() < controller_interval_s
    ):
        return
    controller.run_pass(now)
    controller.last_pass = now
    metrics.mark_controller_pass(now)
    try:  # drift checks throttle themselves (CROUPIER_DRIFT_CHECK_INTERVAL_S)
        run_drift_checks(sessions=sessions, now=now, settings=settings)
    except Exception:
        log.exception("drift checks failed")


async def learner_loop(
    *,
    engine: Engine,
    sessions: sessionmaker[Session],
    tick_s: float,
    safety_lag_s: float,
    learner: str,
    controller_interval_s: float = 10.0,
    controller_enabled: bool = True,
    settings: Settings | None = None,
) -> None:
    lock = leader_lock(engine)
    controller = Controller(sessions, learner) if controller_enabled else None
    running: asyncio.Future[None] | None = None
    try:
        while True:
            try:
                leading = await asyncio.to_thread(lambda: lock.held() or lock.acquire())
                if leading:
                    running = asyncio.ensure_future(
                        asyncio.to_thread(
                            leader_pass,
                            sessions=sessions,
                            safety_lag_s=safety_lag_s,
                            learner=learner,
                            controller=controller,
                            controller_interval_s=controller_interval_s,
                            settings=settings,
                        )
                    )
                    await asyncio.shield(running)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("learner pass failed; retrying next tick")
            await asyncio.sleep(tick_s)
    finally:
        # A pass still running in its thread finishes before the lock is given up, so no
        # second learner can start while this one is writing.
        if running is not None and not running.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(running), timeout=30)
        await asyncio.to_thread(lock.release)
