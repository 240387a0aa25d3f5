"""The command line: migrate, keys create|list|revoke, learn --once, first-start bootstrap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import bootstrap_admin_key, main
from app.settings import Settings, get_settings


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CROUPIER_DATABASE_URL", url)
    monkeypatch.delenv("CROUPIER_ADMIN_KEY", raising=False)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_keys_are_created_listed_and_revoked(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == "database at migration 0004\n"
    assert main(["keys", "create", "--name", "app", "--scope", "decide", "--scope", "read"]) == 0
    key = capsys.readouterr().out.strip()
    prefix = key.split("_")[1]
    assert key.startswith(f"crp_{prefix}_")
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{prefix}\tapp\tdecide,read\tactive" in listing
    assert key.split("_", 2)[2] not in listing  # never the secret
    assert main(["keys", "revoke", prefix]) == 0
    capsys.readouterr()
    main(["keys", "list"])
    assert f"{prefix}\tapp\tdecide,read\trevoked" in capsys.readouterr().out
    assert main(["keys", "revoke", "ffff"]) == 1
    assert "no API key with prefix 'ffff'" in capsys.readouterr().err


def test_first_start_creates_one_admin_key_and_never_again(database: str) -> None:
    main(["migrate"])
    settings = Settings(database_url=database)
    first = bootstrap_admin_key(settings)
    assert first is not None
    assert first.startswith("crp_")
    assert bootstrap_admin_key(settings) is None
    configured = Settings(database_url=database, admin_key="x" * 24)
    assert bootstrap_admin_key(configured) is None
    # Even with every key revoked, a restart mints none: `croupier keys create` is the way.
    main(["keys", "revoke", first.split("_")[1]])
    assert bootstrap_admin_key(settings) is None


def test_configured_admin_key_means_no_generated_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    from app import migrate

    migrate.upgrade(url)
    assert bootstrap_admin_key(Settings(database_url=url, admin_key="y" * 24)) is None


def test_learn_once_runs_a_pass(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["migrate"])
    capsys.readouterr()
    assert main(["learn", "--once"]) == 0
    assert capsys.readouterr().out == ""  # no running bandits: nothing to learn


def test_learn_once_refuses_while_another_learner_holds_the_lock(database: str) -> None:
    from app.db import make_engine
    from app.learning.runner import leader_lock

    main(["migrate"])
    engine = make_engine(database)
    lock = leader_lock(engine)
    assert lock.acquire()
    try:
        assert main(["learn", "--once"]) == 2
    finally:
        lock.release()
        engine.dispose()
