"""Fixtures: a migrated database per test (SQLite always, PostgreSQL when
CROUPIER_TEST_DATABASE_URL is set) and a TestClient running the real lifespan.

The schema comes from Alembic only. SQLite tests copy a migrated template file; PostgreSQL
tests migrate a fresh schema once per session and truncate every table between tests.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from app import migrate
from app.db import make_session_factory
from app.main import create_app
from app.settings import Settings

ADMIN_KEY = "test-admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PG_URL = os.environ.get("CROUPIER_TEST_DATABASE_URL")
TABLES = (
    "webhook_deliveries",
    "webhooks",
    "alerts",
    "rollouts",
    "outcomes",
    "decisions",
    "policy_versions",
    "experiment_revisions",
    "variants",
    "experiments",
    "api_keys",
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="set CROUPIER_TEST_DATABASE_URL to run PostgreSQL tests")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "croupier.db"
    migrate.upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    assert PG_URL, "PostgreSQL tests need CROUPIER_TEST_DATABASE_URL"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrate.upgrade(PG_URL)
    return PG_URL


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "croupier.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_migrated")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "croupier.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "admin_key": ADMIN_KEY,
        "learner_enabled": False,
        "webhooks_enabled": False,  # tests drive deliveries themselves (tests/test_webhooks.py)
        "policy_check_interval_s": 0.05,
        "learner_safety_lag_s": 0.0,
        "key_cache_ttl_s": 0.0,
        "sqlite_synchronous": "NORMAL",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url)
    yield eng
    eng.dispose()


def count_rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def experiment_body(key: str = "exp", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "name": "Ranking model v2 vs v1",
        "variants": [
            {"key": "control", "payload": {"model": "v1"}, "is_control": True},
            {"key": "treatment", "payload": {"model": "v2"}},
        ],
        "policy": {"type": "fixed"},
        "reward_window_s": 60,
    }
    body.update(overrides)
    return body


@pytest.fixture
def create_experiment(client: TestClient) -> Callable[..., dict[str, Any]]:
    def create(key: str = "exp", *, start: bool = True, **overrides: Any) -> dict[str, Any]:
        response = client.post(
            "/v1/experiments", json=experiment_body(key, **overrides), headers=ADMIN
        )
        assert response.status_code == 201, response.text
        if start:
            response = client.post(f"/v1/experiments/{key}/start", headers=ADMIN)
            assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    return create


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on the test's database."""
    return make_session_factory(engine)


@pytest.fixture
def api(client: TestClient) -> TestClient:
    """The API client (webhook and alert tests call it so)."""
    return client
