"""Liveness and readiness, and refusing to serve an unmigrated database."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import make_settings


def test_healthz_and_readyz_report_a_migrated_reachable_database(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


def test_readyz_is_503_when_the_database_is_gone(sqlite_url: str) -> None:
    with TestClient(create_app(make_settings(sqlite_url))) as client:
        client.app.state.runtime.engine.dispose()  # type: ignore[attr-defined]
        Path(sqlite_url.removeprefix("sqlite:///")).unlink()
        Path(sqlite_url.removeprefix("sqlite:///")).mkdir()  # a directory: cannot be opened
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unreachable")


def test_the_service_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(RuntimeError, match="croupier migrate"), TestClient(create_app(settings)):
        pass
