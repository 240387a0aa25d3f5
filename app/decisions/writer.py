"""Group commit for exposures: many requests share one transaction, and each request is
answered only after the transaction holding its rows has committed.

The writer task takes whatever requests are waiting (up to `max_batch` rows), writes them in
one transaction in a worker thread, then resolves every waiting request. While one commit is
in flight the next batch accumulates, so under load one fsync serves many requests and an idle
service adds no waiting at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from app.decisions.models import Decision
from app.errors import Conflict

log = logging.getLogger("croupier.writer")
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's DateTime stores values on SQLite
DECISIONS: Table = Decision.__table__  # type: ignore[assignment]
STORED_COLUMNS = (
    "id",
    "experiment_id",
    "unit_id",
    "variant_id",
    "arm",
    "propensity",
    "probabilities",
    "policy_version",
    "decided_at",
    "fallback",
    "experimental",
)


@dataclass
class _Request:
    rows: list[dict[str, Any]]
    client_ids: bool
    future: asyncio.Future[list[dict[str, Any]]] = field(repr=False)


class DecisionWriter:
    def __init__(self, engine: Engine, *, max_batch: int) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches_written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="decision-writer")

    async def stop(self) -> None:
        """Write everything already submitted, then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(None)  # after everything queued before it
        await self._task
        self._task = None

    async def submit(self, rows: list[dict[str, Any]], *, client_ids: bool) -> list[dict[str, Any]]:
        """Write rows; returns the stored rows (for client-supplied ids: what was stored first)."""
        if self._task is None or self._task.done():
            raise RuntimeError("the decision writer is not running")
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(rows, client_ids, future))
        return await future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first.rows)
            while size < self._max_batch and not self._queue.empty():
                request = self._queue.get_nowait()
                if request is None:
                    stopping = True
                    break
                batch.append(request)
                size += len(request.rows)
            try:
                results = await asyncio.to_thread(self._write, batch)
            except Exception as exc:
                log.exception("writing %d decisions failed", size)
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self.batches_written += 1
            for request, result in zip(batch, results, strict=True):
                if request.future.done():  # the client went away; its rows are stored anyway
                    continue
                if isinstance(result, Exception):
                    request.future.set_exception(result)
                else:
                    request.future.set_result(result)

    def _write(self, batch: Sequence[_Request]) -> list[list[dict[str, Any]] | Exception]:
        with self._engine.begin() as conn:
            fresh = [row for request in batch if not request.client_ids for row in request.rows]
            if fresh:
                _insert_fresh(conn, fresh)
            return [
                _write_idempotent(conn, request.rows) if request.client_ids else request.rows
                for request in batch
            ]


INSERT_COLUMNS = (
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


def _insert_fresh(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Plain INSERT of server-generated ids through the driver's executemany.

    Core's per-row bind processing cost more than the rest of a decision, so the values are
    converted here exactly as the column types would (tests/test_decisions_api.py reads them
    back through the ORM types): JSON text, naive UTC in SQLAlchemy's SQLite datetime format.
    """
    sqlite_db = conn.dialect.name == "sqlite"
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO decisions ({', '.join(INSERT_COLUMNS)}) "  # noqa: S608 (constant names)
        f"VALUES ({', '.join([mark] * len(INSERT_COLUMNS))})"
    )
    params = []
    for row in rows:
        decided = row["decided_at"].astimezone(UTC)
        context = row["context"]
        params.append(
            (
                row["id"],
                row["experiment_id"],
                row["unit_id"],
                row["variant_id"],
                row["arm"],
                row["propensity"],
                json.dumps(row["probabilities"]),
                row["policy_version"],
                None if context is None else json.dumps(context),
                decided.replace(tzinfo=None).strftime(SQLITE_DATETIME) if sqlite_db else decided,
                row["fallback"],
                row["experimental"],
            )
        )
    conn.exec_driver_sql(sql, params)


def _insert_ignoring_duplicates(conn: Connection) -> Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(DECISIONS).on_conflict_do_nothing(index_elements=["id"])
    return sqlite.insert(DECISIONS).on_conflict_do_nothing(index_elements=["id"])


def _write_idempotent(
    conn: Connection, rows: list[dict[str, Any]]
) -> list[dict[str, Any]] | Exception:
    """Rows whose ids the client chose: a retry returns the stored answer. A savepoint keeps a
    request whose id belongs to another unit or experiment from writing anything."""
    try:
        with conn.begin_nested():
            conn.execute(_insert_ignoring_duplicates(conn), rows)
            stored: dict[str, dict[str, Any]] = {}
            ids = [row["id"] for row in rows]
            columns = [DECISIONS.c[name] for name in STORED_COLUMNS]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for found in conn.execute(select(*columns).where(DECISIONS.c.id.in_(chunk))):
                    stored[found.id] = dict(found._mapping)
            for row in rows:
                first = stored[row["id"]]
                if (first["experiment_id"], first["unit_id"]) != (
                    row["experiment_id"],
                    row["unit_id"],
                ):
                    raise Conflict(
                        f"decision_id {row['id']!r} was already used for another unit or "
                        "experiment; decision ids must be unique",
                        kind="decision-id-reused",
                    )
            return [stored[row["id"]] for row in rows]
    except Conflict as exc:
        return exc
