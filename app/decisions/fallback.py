"""Fallback: decide keeps answering while the database is unreachable or too slow.

When the group-commit write of a decision fails with a connection error or does not commit
within `CROUPIER_DB_BUDGET_MS`, the process turns *degraded*: every decision is answered from
memory with the experiment's control (a concluded or archived one: its winner), `fallback:
true`, `experimental: false`, propensity 1, and its exposure row is appended to this process's
spool (app.decisions.spool) before the answer leaves. Outcomes are spooled too (status
`spooled`). Experiments this process has never loaded get 503: nothing is known to serve.

While degraded the request path does not touch the database at all. A background loop
(`Fallback.run`) tries to replay the spool every `REPLAY_INTERVAL_S`; once a pass has stored
everything, it stores the last records with appends held back and switches back to normal
under the same lock, so that an outcome is never sent to the database before its spooled
decision got there.

Exactly once. Replay is idempotent, so a file replayed twice (a crash mid-replay, before the
file was removed) changes nothing the second time:
- A decision is keyed by its id. When the id is absent it is inserted. When present with the
  same experiment, unit and `decided_at` it is this very request's write that timed out and
  committed after all (a fallback answer keeps the id the request was given): the row is
  overwritten with what was actually served (the fallback answer), because the log must hold
  the variant the unit saw. Any other row with that id (a client's id used earlier) wins;
  the spooled row is dropped, as a retry would have returned the stored answer.
- An outcome is keyed by (decision, metric, outcome_id or value+timestamp), as always: ON
  CONFLICT DO NOTHING. Its decision may sit in another local process's spool not replayed yet:
  then it is kept for a later pass (up to `UNKNOWN_KEEP_S`); otherwise it is dropped, which is
  what the live path would have answered (`unknown_decision`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.decisions.cache import PolicyCache, ServedExperiment
from app.decisions.models import Decision
from app.decisions.spool import Spool, SpoolFile
from app.decisions.writer import CommitTooLate, ConnectionLost
from app.outcomes import service as outcomes_service
from app.outcomes.schemas import OutcomeIn
from app.settings import Settings

log = logging.getLogger("croupier.fallback")

REPLAY_INTERVAL_S = 1.0
ORPHAN_SCAN_S = 30.0
"""How often a healthy process looks for spool files left by dead processes."""
UNKNOWN_KEEP_S = 600.0
"""How long a spooled outcome whose decision is not in the database yet is kept while other
local spool files may still hold that decision."""
PER_ROW_BUDGET_S = 0.000_05
"""A batch decide gets the budget plus this per unit (10,000 units: +0.5 s)."""
CHUNK = 500
SPOOL_THREADS = 16
"""Threads that append to the spool for the async request path, apart from the default
executor (which calls stuck on a dead database may fill)."""


def spool_directory(settings: Settings) -> Path:
    """CROUPIER_SPOOL_DIR, else `croupier-spool` next to the SQLite database, else
    ./croupier-spool."""
    if settings.spool_dir:
        return Path(settings.spool_dir)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "croupier-spool"
    return Path("croupier-spool").resolve()


def outage(exc: BaseException) -> bool:
    """The database is away or too slow (as opposed to refusing this request's data)."""
    if isinstance(exc, (TimeoutError, ConnectionLost, CommitTooLate)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, I/O error, gone
        return True
    # The DB-API's classes for a lost or refused connection (psycopg's AdminShutdown,
    # ConnectionTimeout... are OperationalError subclasses).
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"OperationalError", "InterfaceError"}) and not isinstance(
        exc, IntegrityError
    )


def fallback_row(served: ServedExperiment, row: dict[str, Any]) -> dict[str, Any]:
    """What is served while degraded: control, or a concluded/archived experiment's winner."""
    arm = served.control
    if served.status in ("concluded", "archived") and served.winner is not None:
        arm = served.winner
    return {
        **row,
        "variant_id": served.variants[arm].id,
        "arm": arm,
        "propensity": 1.0,
        "probabilities": {v.key: 1.0 if i == arm else 0.0 for i, v in enumerate(served.variants)},
        "fallback": True,
        "experimental": False,
    }


def _decision_record(row: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "kind": "decision",
        "at": at.isoformat(),
        "row": {**row, "decided_at": row["decided_at"].astimezone(UTC).isoformat()},
    }


def _outcome_record(item: OutcomeIn, at: datetime) -> dict[str, Any]:
    return {"kind": "outcome", "at": at.isoformat(), "item": item.model_dump(mode="json")}


class Fallback:
    """The degraded mode of one process: its spool, its state and the replay loop.

    The lifespan calls `open()` (creates this process's spool file), `start()` (the replay
    loop) and, at shutdown, `await stop()`; it sets `app.state.fallback`."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        sessions: sessionmaker[Session],
        policies: PolicyCache,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._sessions = sessions
        self._policies = policies
        self.budget_s = settings.db_budget_ms / 1000
        prefix = f"{socket.gethostname()}-{os.getpid()}".replace("/", "_")
        self.spool = Spool(spool_directory(settings), prefix=prefix)
        # Read on every request without a lock: a plain attribute, changed under the
        # spool's lock only.
        self.degraded = False
        self.since: datetime | None = None
        self.last_error: str | None = None
        self.replayed = 0
        self._backlog: list[SpoolFile] = []
        self._task: asyncio.Task[None] | None = None
        self._replay_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(SPOOL_THREADS, thread_name_prefix="croupier-spool")

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        self.spool.open()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="spool-replay")

    async def stop(self) -> None:
        """Stop the loop, try a last replay, keep what could not be stored for the next
        process (the spool file stays; the next start replays it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.busy:
            try:
                await asyncio.to_thread(self.replay_once)
            except Exception as exc:
                log.warning("spool not replayed at shutdown (%s); the next start will", exc)
        for held in self._backlog:
            held.close()
        self._backlog = []
        self._executor.shutdown(wait=True)
        self.spool.close()

    # -- state -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.degraded or bool(self._backlog) or self.spool.records > 0

    def budget_for(self, units: int) -> float:
        return self.budget_s + units * PER_ROW_BUDGET_S

    def _mark(self, error: BaseException | None) -> bool:
        """Enter (or stay in) degraded mode; call with the spool's lock held."""
        if error is not None:
            self.last_error = f"{type(error).__name__}: {error}"[:500]
        if not self.degraded:
            self.since = utcnow()
            self.degraded = True
            log.error("database unavailable (%s): serving fallback answers", self.last_error)
        return True

    def enter(self, error: BaseException) -> None:
        """The database failed outside the decide path (e.g. /readyz)."""
        with self.spool.locked():
            self._mark(error)

    @property
    def serving(self) -> bool:
        """Some experiment is in memory: there is something to answer with."""
        return len(self._policies) > 0

    def cached(self, key: str) -> ServedExperiment | None:
        """The experiment as this process knows it, never asking the database."""
        return self._policies.peek(key)

    def status(self) -> dict[str, Any]:
        return {
            "degraded": self.degraded,
            "since": self.since.isoformat() if self.since is not None else None,
            "last_error": self.last_error,
            "spool": {
                "directory": str(self.spool.directory),
                "records": self.spool.records + sum(f.records for f in self._backlog),
                "bytes": self.spool.size + sum(f.size for f in self._backlog),
                "files_waiting": len(self._backlog),
            },
            "replayed": self.replayed,
        }

    # -- the request path ------------------------------------------------------------------

    async def spool_decisions(
        self,
        served: ServedExperiment,
        rows: list[dict[str, Any]],
        *,
        error: BaseException | None,
    ) -> list[dict[str, Any]] | None:
        """Fallback answers for `rows`, spooled durably. With `error` (the write just failed)
        the process turns degraded; without, nothing is spooled and None is returned when
        the process is no longer degraded (the caller writes as usual)."""
        answers = [fallback_row(served, row) for row in rows]
        at = utcnow()
        records = [_decision_record(row, at) for row in answers]
        if error is not None:
            await self._append(records, lambda: self._mark(error))
            return answers
        if await self._append(records, lambda: self.degraded):
            return answers
        return None

    async def _append(self, records: list[dict[str, Any]], check: Callable[[], bool]) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.spool.append(records, check=check)
        )

    async def spool_outcomes_async(
        self, items: Sequence[OutcomeIn], *, error: BaseException | None
    ) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.spool_outcomes(items, error=error)
        )

    def spool_outcomes(self, items: Sequence[OutcomeIn], *, error: BaseException | None) -> bool:
        """Spool outcomes durably (blocking). Without `error`, only while still degraded."""
        at = utcnow()
        records = [_outcome_record(item, at) for item in items]
        if error is not None:
            return self.spool.append(records, check=lambda: self._mark(error))
        return self.spool.append(records, check=lambda: self.degraded)

    # -- replay ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Replay every REPLAY_INTERVAL_S while anything is spooled (or the process is
        degraded); otherwise look for files of dead processes every ORPHAN_SCAN_S."""
        since_scan = ORPHAN_SCAN_S  # scan at once: leftovers of a previous run
        while True:
            if self.busy or since_scan >= ORPHAN_SCAN_S:
                since_scan = 0.0
                try:
                    await asyncio.to_thread(self.replay_once)
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    log.warning("spool replay failed (%s); retrying", self.last_error)
            await asyncio.sleep(REPLAY_INTERVAL_S)
            since_scan += REPLAY_INTERVAL_S

    def replay_once(self) -> None:
        """One pass (blocking): replay this process's spool and any dead process's; then,
        if degraded, replay the last records with appends held back and leave degraded
        mode. Raises when the database is still away (everything stays spooled)."""
        with self._replay_lock:
            rotated = self.spool.rotate()
            if rotated is not None:
                self._backlog.append(rotated)
            self._backlog.extend(self.spool.claim_orphans())
            if self._backlog:
                self._replay(self._backlog)
                for done in self._backlog:
                    self.spool.discard(done)
                self._backlog = []
            if not self.degraded:
                return
            self._probe()  # nothing spooled may still mean nothing reachable
            with self.spool.locked():
                self.spool.drain()  # appends admitted while degraded: in this tail
                tail = self.spool.rotate()
                if tail is not None:
                    try:
                        self._replay([tail])
                    except Exception:
                        self._backlog.append(tail)
                        raise
                    self.spool.discard(tail)
                self.degraded = False
                since = self.since
                self.since = None
            log.warning(
                "database back: spool replayed, normal service resumed (degraded since %s)",
                since.isoformat() if since is not None else "?",
            )

    def _probe(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))

    def _replay(self, files: Sequence[SpoolFile]) -> None:
        decisions: list[dict[str, Any]] = []
        outcomes: list[outcomes_service.Spooled] = []
        for spooled in files:
            records, bad = spooled.read()
            if bad:
                log.warning("%s: skipped %d torn or corrupt line(s)", spooled.path.name, bad)
            for record in records:
                try:
                    if record["kind"] == "decision":
                        row = dict(record["row"])
                        row["decided_at"] = datetime.fromisoformat(row["decided_at"])
                        decisions.append(row)
                    elif record["kind"] == "outcome":
                        outcomes.append(
                            outcomes_service.Spooled(
                                OutcomeIn.model_validate(record["item"]),
                                datetime.fromisoformat(record["at"]),
                            )
                        )
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("%s: unreadable record skipped (%s)", spooled.path.name, exc)
        for start in range(0, len(decisions), CHUNK):
            self._replay_decisions(decisions[start : start + CHUNK])
        keep: list[outcomes_service.Spooled] = []
        for start in range(0, len(outcomes), CHUNK):
            keep.extend(self._replay_outcomes(outcomes[start : start + CHUNK], files))
        if keep:
            # Durably back into the spool before the replayed files are removed.
            self.spool.append(_outcome_record(s.item, s.received_at) for s in keep)
        self.replayed += len(decisions) + len(outcomes) - len(keep)

    def _replay_decisions(self, rows: list[dict[str, Any]]) -> None:
        try:
            with transaction(self._sessions) as session:
                self._store_decisions(session, rows)
        except IntegrityError:
            # Some row the database refuses (its experiment deleted meanwhile): store the
            # others one by one, and say which could not be.
            for row in rows:
                try:
                    with transaction(self._sessions) as session:
                        self._store_decisions(session, [row])
                except IntegrityError as exc:
                    log.error("spooled decision %s refused by the database: %s", row["id"], exc)

    def _store_decisions(self, session: Session, rows: list[dict[str, Any]]) -> None:
        unique: dict[str, dict[str, Any]] = {}
        for row in rows:
            unique.setdefault(row["id"], row)  # a client id spooled twice: the first answer
        found = {
            r.id: r
            for r in session.execute(
                select(
                    Decision.id,
                    Decision.experiment_id,
                    Decision.unit_id,
                    Decision.decided_at,
                    Decision.fallback,
                ).where(Decision.id.in_(list(unique)))
            )
        }
        fresh = [row for key, row in unique.items() if key not in found]
        if fresh:
            dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite_dialect
            session.execute(
                dialect.insert(Decision).on_conflict_do_nothing(index_elements=["id"]), fresh
            )
        for key, existing in found.items():
            row = unique[key]
            same_request = (existing.experiment_id, existing.unit_id, existing.decided_at) == (
                row["experiment_id"],
                row["unit_id"],
                row["decided_at"],
            )
            if same_request and not existing.fallback:
                # The write that timed out committed after all; the unit saw the fallback.
                session.execute(
                    update(Decision)
                    .where(Decision.id == key)
                    .values(
                        variant_id=row["variant_id"],
                        arm=row["arm"],
                        propensity=row["propensity"],
                        probabilities=row["probabilities"],
                        policy_version=row["policy_version"],
                        fallback=True,
                        experimental=False,
                    )
                )
            elif not same_request:
                log.warning("spooled decision %s: the id was already used; kept the stored", key)

    def _replay_outcomes(
        self, chunk: list[outcomes_service.Spooled], files: Sequence[SpoolFile]
    ) -> list[outcomes_service.Spooled]:
        """Store a chunk; returns the outcomes to keep for a later pass."""
        with transaction(self._sessions) as session:
            statuses = outcomes_service.replay(
                session=session,
                spooled=chunk,
                now=utcnow(),
                max_delay_s=self._settings.max_commit_delay_s,
            )
        keep: list[outcomes_service.Spooled] = []
        waiting = self._other_spools(files)
        oldest = utcnow() - timedelta(seconds=UNKNOWN_KEEP_S)
        for spooled, status in zip(chunk, statuses, strict=True):
            if status == "unknown_decision" and waiting and spooled.received_at > oldest:
                keep.append(spooled)
            elif status in ("unknown_decision", "invalid"):
                log.warning(
                    "spooled outcome for decision %s dropped: %s",
                    spooled.item.decision_id,
                    status,
                )
        return keep

    def _other_spools(self, files: Sequence[SpoolFile]) -> bool:
        """Another local spool file with records (a live process's, not replayed yet)?"""
        mine = {f.path for f in files}
        active = self.spool.active_path
        try:
            for path in self.spool.directory.glob("*.spool"):
                if path in mine or path == active:
                    continue
                if path.stat().st_size > 0:
                    return True
        except OSError:
            return True
        return False
