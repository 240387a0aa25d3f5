"""Group commit for exposures: many requests share one transaction, and each request is
answered only after the transaction holding its rows has committed.

The writer task takes whatever requests are waiting (up to `max_batch` rows), writes them in
one transaction in a worker thread, then resolves every waiting request. While one commit is
in flight the next batch accumulates, so under load one fsync serves many requests and an idle
service adds no waiting at all.

This is the hottest write in Croupier, so it talks to the driver (DB-API) directly on one
connection it keeps: SQLAlchemy's per-row processing cost more than the rest of a decision.
Values are converted here exactly as the ORM column types would (JSON text; on SQLite naive
UTC in SQLAlchemy's datetime format), and tests read them back through the ORM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from app.errors import Conflict

log = logging.getLogger("croupier.writer")

SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's DateTime stores values on SQLite
COLUMNS = (
    "id",
    "experiment_id",
    "unit_id",
    "variant_id",
    "arm",
    "propensity",
    "probabilities",
    "policy_version",
    "context",
    "decided_at",
    "fallback",
    "experimental",
)
# What an idempotent retry needs to answer exactly as the first call did.
STORED = (
    "id",
    "experiment_id",
    "unit_id",
    "arm",
    "propensity",
    "policy_version",
    "fallback",
    "experimental",
)
CHUNK = 500


@dataclass
class _Request:
    rows: list[dict[str, Any]]
    client_ids: bool
    future: asyncio.Future[list[dict[str, Any]]] = field(repr=False)


class _Statements:
    """The SQL for one dialect (qmark for SQLite, format for psycopg)."""

    def __init__(self, engine: Engine) -> None:
        self.sqlite = engine.dialect.name == "sqlite"
        self.mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self.row_marks = f"({', '.join([self.mark] * len(COLUMNS))})"
        self.insert = f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES {self.row_marks}"  # noqa: S608
        self.insert_ignore = f"{self.insert} ON CONFLICT (id) DO NOTHING"

    def insert_many(self, cursor: Any, params: list[tuple[Any, ...]]) -> None:
        """All rows in as few statements as possible. SQLite: executemany of one prepared
        statement. PostgreSQL: multi-row VALUES, far less server work than a row each."""
        if self.sqlite:
            cursor.executemany(self.insert, params)
            return
        for start in range(0, len(params), CHUNK):
            chunk = params[start : start + CHUNK]
            values = ", ".join([self.row_marks] * len(chunk))
            cursor.execute(
                f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES {values}",  # noqa: S608
                [value for row in chunk for value in row],
            )

    def select_stored(self, n: int) -> str:
        marks = ", ".join([self.mark] * n)
        return f"SELECT {', '.join(STORED)} FROM decisions WHERE id IN ({marks})"  # noqa: S608

    def params(self, row: dict[str, Any]) -> tuple[Any, ...]:
        decided = row["decided_at"].astimezone(UTC)
        context = row["context"]
        return (
            row["id"],
            row["experiment_id"],
            row["unit_id"],
            row["variant_id"],
            row["arm"],
            row["propensity"],
            orjson.dumps(row["probabilities"]).decode(),
            row["policy_version"],
            None if context is None else orjson.dumps(context).decode(),
            decided.replace(tzinfo=None).strftime(SQLITE_DATETIME) if self.sqlite else decided,
            row["fallback"],
            row["experimental"],
        )


class ConnectionLost(Exception):
    """The server closed the writer's connection; a fresh connection may well succeed."""


class CommitTooLate(Exception):
    """The batch would commit later than the learner allows after its decisions were made."""


def transient(exc: BaseException) -> bool:
    """Errors that a second attempt of the same transaction can clear: deadlocks and
    serialisation failures (PostgreSQL), a locked database (SQLite)."""
    if getattr(exc, "sqlstate", None) in ("40P01", "40001"):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _discard(connection: PoolProxiedConnection) -> None:
    with contextlib.suppress(Exception):
        connection.rollback()
    with contextlib.suppress(Exception):
        connection.invalidate()


class DecisionWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int,
        max_delay_s: float | None,
        connections: int = 1,
    ) -> None:
        """`max_delay_s`: the longest a decision may wait between being made and being
        committed (None: no limit). The learner counts a decision once its reward window and
        safety lag have passed; a row committed later than that would never be counted, so
        such a batch is refused (503) instead: nothing acknowledged escapes the learner.

        `connections`: batches in flight at once, each in its own transaction on its own
        connection. On PostgreSQL a commit is a network round trip and an fsync, so a second
        batch in flight keeps the process busy meanwhile; SQLite has one writer, so 1 there.
        """
        self._engine = engine
        self._sql = _Statements(engine)
        self._max_batch = max_batch
        self._max_delay = timedelta(seconds=max_delay_s) if max_delay_s is not None else None
        self._lanes = 1 if self._sql.sqlite else max(1, connections)
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Idle connections; each batch takes one for its transaction and gives it back.
        self._idle: list[PoolProxiedConnection] = []
        self._idle_lock = threading.Lock()
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="decision-writer")

    async def stop(self) -> None:
        """Write everything already submitted, then stop."""
        if self._task is None:
            return
        self._closing = True  # no new requests: nothing may queue behind the end marker
        self._queue.put_nowait(None)  # after everything queued before it
        await self._task
        self._task = None
        await asyncio.to_thread(self._close_idle)

    async def submit(self, rows: list[dict[str, Any]], *, client_ids: bool) -> list[dict[str, Any]]:
        """Write rows; returns the stored rows (for client-supplied ids: what was stored first)."""
        if self._task is None or self._task.done() or self._closing:
            raise RuntimeError("the decision writer is not running")
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(rows, client_ids, future))
        return await future

    async def _run(self) -> None:
        lanes = asyncio.Semaphore(self._lanes)
        in_flight: set[asyncio.Task[None]] = set()
        stopping = False
        while not stopping:
            await lanes.acquire()  # a free lane first: meanwhile the next batch grows
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            size = len(first.rows)
            while size < self._max_batch and not self._queue.empty():
                request = self._queue.get_nowait()
                if request is None:
                    stopping = True
                    break
                batch.append(request)
                size += len(request.rows)
            task = asyncio.create_task(self._flush(batch))
            in_flight.add(task)

            def done(finished: asyncio.Task[None]) -> None:
                in_flight.discard(finished)
                lanes.release()

            task.add_done_callback(done)
        if in_flight:
            await asyncio.wait(in_flight)

    async def _flush(self, batch: list[_Request]) -> None:
        # A request whose caller gave up before its batch started (the fallback's budget ran
        # out) is not written at all: it was answered from the fallback and spooled.
        batch = [request for request in batch if not request.future.done()]
        if not batch:
            return
        try:
            results = await asyncio.to_thread(self._write_isolating, batch)
        except Exception as exc:
            log.exception("writing %d decisions failed", sum(len(r.rows) for r in batch))
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        for request, result in zip(batch, results, strict=True):
            if request.future.done():  # the client went away; its rows are stored anyway
                continue
            if isinstance(result, Exception):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

    def _write_isolating(self, batch: Sequence[_Request]) -> list[list[dict[str, Any]] | Exception]:
        """Write the batch. Requests already past their deadline fail at once (never holding
        up the others). If the database refuses the batch for something one request carried
        (a constraint, a value), each request is written on its own so that only the
        offender fails; errors of the database itself fail the batch as they are."""
        results: dict[int, list[dict[str, Any]] | Exception] = {}
        live: list[_Request] = []
        for request in batch:
            if self._past_deadline([request]):
                results[id(request)] = self._too_late([request])
            else:
                live.append(request)
        if live:
            try:
                for request, result in zip(live, self._write_retrying(live), strict=True):
                    results[id(request)] = result
            except Exception as exc:
                if len(live) == 1 or not self._caused_by_data(exc):
                    for request in live:
                        results[id(request)] = exc
                else:
                    log.warning(
                        "a batch of %d requests failed (%s); writing them one by one",
                        len(live),
                        exc,
                    )
                    for request in live:
                        try:
                            results[id(request)] = self._write_retrying([request])[0]
                        except Exception as alone:
                            results[id(request)] = alone
        return [results[id(request)] for request in batch]

    def _caused_by_data(self, exc: Exception) -> bool:
        """A constraint or a value the database refused: the fault of some request's rows."""
        dbapi = self._engine.dialect.loaded_dbapi
        return isinstance(exc, (dbapi.IntegrityError, dbapi.DataError))

    def _write_retrying(
        self, batch: Sequence[_Request], attempts: int = 3
    ) -> list[list[dict[str, Any]] | Exception]:
        """Retry what a second attempt can clear (deadlock, locked database, a connection the
        server closed), while the deadline allows."""
        for attempt in range(attempts):
            if self._past_deadline(batch):
                raise self._too_late(batch)
            try:
                return self._write(batch)
            except Exception as exc:
                retry = transient(exc) or isinstance(exc, ConnectionLost)
                if attempt == attempts - 1 or not retry:
                    raise
                log.info("retrying a decision batch after %s", type(exc).__name__)
        raise AssertionError("unreachable")

    def _disconnected(self, exc: Exception, connection: PoolProxiedConnection) -> bool:
        """The server closed the connection (restart, failover, idle timeout)."""
        dbapi = self._engine.dialect.loaded_dbapi
        return isinstance(exc, dbapi.Error) and bool(
            self._engine.dialect.is_disconnect(exc, connection.dbapi_connection, None)
        )

    def _past_deadline(self, batch: Sequence[_Request]) -> bool:
        if self._max_delay is None:
            return False
        oldest = min(row["decided_at"] for request in batch for row in request.rows)
        return bool(datetime.now(UTC) - oldest > self._max_delay)

    def _too_late(self, batch: Sequence[_Request]) -> CommitTooLate:
        assert self._max_delay is not None
        oldest = min(row["decided_at"] for request in batch for row in request.rows)
        return CommitTooLate(
            f"decisions made at {oldest.isoformat()} could not be committed within "
            f"{self._max_delay.total_seconds():g} s"
        )

    def _connection(self) -> PoolProxiedConnection:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        connection = self._engine.raw_connection()
        if self._sql.sqlite and self._max_delay is not None:
            # Waiting for SQLite's write lock longer than the deadline is waiting for nothing.
            wait_ms = max(1, int(self._max_delay.total_seconds() * 1000))
            connection.cursor().execute(f"PRAGMA busy_timeout={wait_ms}")
        return connection

    def _write(self, batch: Sequence[_Request]) -> list[list[dict[str, Any]] | Exception]:
        connection = self._connection()
        try:
            cursor = connection.cursor()
            if self._sql.sqlite:
                cursor.execute("BEGIN IMMEDIATE")  # explicit, so savepoints nest inside it
            fresh = [
                self._sql.params(row)
                for request in batch
                if not request.client_ids
                for row in request.rows
            ]
            if fresh:
                self._sql.insert_many(cursor, fresh)
            results = [
                self._write_idempotent(cursor, request.rows) if request.client_ids else request.rows
                for request in batch
            ]
            if self._past_deadline(batch):
                raise self._too_late(batch)
            connection.commit()
            cursor.close()
        except CommitTooLate:
            connection.rollback()  # nothing wrong with the connection itself
            with self._idle_lock:
                self._idle.append(connection)
            raise
        except Exception as exc:
            lost = self._disconnected(exc, connection)
            _discard(connection)  # a connection that failed mid-transaction is never reused
            if lost:
                raise ConnectionLost(str(exc)) from exc
            raise
        with self._idle_lock:
            self._idle.append(connection)
        return results

    def _close_idle(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()

    def _write_idempotent(
        self, cursor: Any, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]] | Exception:
        """Rows whose ids the client chose: a retry returns the stored answer. A savepoint keeps
        a request whose id belongs to another unit or experiment from writing anything."""
        cursor.execute("SAVEPOINT decide")
        # In id order, so two requests inserting overlapping ids usually lock them in the same
        # order; a deadlock that still happens (across batches) is retried.
        ordered = sorted(rows, key=lambda row: str(row["id"]))
        cursor.executemany(self._sql.insert_ignore, [self._sql.params(row) for row in ordered])
        stored: dict[str, dict[str, Any]] = {}
        ids = [row["id"] for row in rows]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            cursor.execute(self._sql.select_stored(len(chunk)), chunk)
            for found in cursor.fetchall():
                stored[found[0]] = dict(zip(STORED, found, strict=True))
        for row in rows:
            first = stored[row["id"]]
            if (first["experiment_id"], first["unit_id"]) != (row["experiment_id"], row["unit_id"]):
                cursor.execute("ROLLBACK TO SAVEPOINT decide")
                cursor.execute("RELEASE SAVEPOINT decide")
                return Conflict(
                    f"decision_id {row['id']!r} was already used for another unit or experiment; "
                    "decision ids must be unique",
                    kind="decision-id-reused",
                )
        cursor.execute("RELEASE SAVEPOINT decide")
        return [stored[row["id"]] for row in rows]
