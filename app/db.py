"""Engine and session factory, the declarative Base and the column types every model shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    Float,
    MetaData,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every engine.

    PostgreSQL stores timestamptz. SQLite has no time zones: we store naive UTC in one fixed
    format, so that string comparison is time comparison, and attach UTC again on the way out.
    Naive datetimes are refused on the way in: a silent local-time guess is how logs go wrong.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; Croupier stores timezone-aware UTC timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class epoch_seconds(FunctionElement[float]):  # noqa: N801 - an SQL function, named like one
    """Seconds since 1970-01-01 UTC of a UTCDateTime column, on every engine (for bucketing
    rows by time in SQL): date_part('epoch') on PostgreSQL, strftime('%s') (whole seconds,
    truncated, so an instant before a boundary stays before it) on SQLite."""

    type = Float()
    inherit_cache = True


@compiles(epoch_seconds)
def _epoch_default(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    # date_part returns a double; EXTRACT returns numeric since PostgreSQL 14, much slower.
    return f"date_part('epoch', {compiler.process(element.clauses, **kw)})"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    # Whole seconds, exactly: SQLite's date functions round to the millisecond (so 10:59:59.9996
    # would count as 11:00), hence the fraction is cut off the stored text first (UTCDateTime
    # stores 'YYYY-MM-DD HH:MM:SS.ffffff'). Buckets are at least a minute wide.
    # julianday of whole-second text is exact to the millisecond; + 0.5 rounds the float
    # product to its integer (faster than strftime('%s'), which formats and parses text).
    column = compiler.process(element.clauses, **kw)
    return f"CAST((julianday(substr({column}, 1, 19)) - 2440587.5) * 86400.0 + 0.5 AS INTEGER)"


# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


WRITE = {"croupier_write": True}
"""Execution options of a transaction that will write (see `transaction`)."""


def _sqlite_pragmas(synchronous: str) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not open transactions behind our back: SQLAlchemy's "begin" event
        # below does, so reads take no lock and writes take the write lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    return on_connect


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_begin(conn: Connection) -> None:
    """BEGIN IMMEDIATE for writing transactions: SQLite then serialises writers at the start,
    so a read-modify-write (revision + 1, next policy version) never works from a stale read,
    and a busy database makes the writer wait (busy_timeout) instead of failing mid-way."""
    immediate = conn.get_execution_options().get("croupier_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work that writes: commit on success, roll back on any error (never a
    partial write). On SQLite it holds the write lock from its first statement."""
    with factory() as session, session.begin():
        session.connection(execution_options=WRITE)
        yield session
