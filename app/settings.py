"""Service configuration: every setting is an environment variable with prefix CROUPIER_.

The README's configuration table lists them; `tests/test_docs.py` checks the two agree.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROUPIER_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///./croupier.db",
        description="SQLAlchemy URL. SQLite (embedded, WAL) or postgresql+psycopg://...",
    )
    host: str = Field("127.0.0.1", description="Address `croupier serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `croupier serve` listens on.")
    workers: int = Field(1, ge=1, description="Uvicorn worker processes for `croupier serve`.")
    admin_key: SecretStr | None = Field(
        None,
        description="An admin API key accepted in addition to the stored keys "
        "(at least 24 characters). When set, no key is generated at first start.",
        min_length=24,
    )
    learner_enabled: bool = Field(
        True, description="Run the learner loop inside the service process."
    )
    learner_tick_s: float = Field(
        1.0,
        gt=0,
        description="How often the learner looks for experiments whose update interval is due.",
    )
    policy_check_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often each process checks (one cheap query) for new policy versions "
        "and configuration changes.",
    )
    learner_safety_lag_s: float = Field(
        5.0,
        ge=0,
        description="Extra delay after a reward window closes before the learner counts the "
        "decision. Decisions and outcomes that cannot commit within half of it get 503 (retry), "
        "so the learner never misses one; clocks of all hosts must agree within half of it. "
        "0 turns both off.",
    )
    group_commit_max_batch: int = Field(
        1000, ge=1, description="Most decisions written in one group-commit transaction."
    )
    writer_connections: int = Field(
        2,
        ge=1,
        le=8,
        description="Group-commit transactions in flight at once on PostgreSQL (SQLite has "
        "one writer, so always 1 there).",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted; larger gets 413."
    )
    max_context_features: int = Field(
        256, ge=1, description="Most features (over all namespaces) in one decision context."
    )
    key_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long a verified API key is trusted from memory; a key revoked in "
        "another process stops working within this time.",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        "FULL",
        description="SQLite synchronous pragma. FULL survives power loss; NORMAL survives "
        "process crashes (kill -9) only.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the service."
    )
    demo: bool = Field(
        True,
        description="On an empty database, `croupier serve` creates two clearly labelled demo "
        "experiments with three days of simulated traffic (false: start empty).",
    )

    @property
    def max_commit_delay_s(self) -> float | None:
        """How long after being made a decision or outcome may still commit (see above)."""
        return self.learner_safety_lag_s / 2 if self.learner_safety_lag_s > 0 else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
