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
    controller_enabled: bool = Field(
        True,
        description="Run the rollout controller (and drift checks) on the learner's leader.",
    )
    controller_interval_s: float = Field(
        10.0,
        gt=0,
        description="How often the rollout controller evaluates experiments with a rollout "
        "policy (each failed guardrail check counts once per pass) and drift is checked.",
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
    db_budget_ms: int = Field(
        250,
        ge=1,
        description="A decision whose exposure cannot be committed within this many "
        "milliseconds (or whose write fails with a connection error) is answered from the "
        "fallback (control, `fallback: true`) and its exposure spooled to local disk; "
        "see docs/operations.md.",
    )
    spool_dir: str | None = Field(
        None,
        description="Directory of the fallback spool (one file per process). Unset: "
        "`croupier-spool` next to the SQLite database, else ./croupier-spool.",
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
    metrics_public: bool = Field(
        False,
        description="Serve GET /metrics without an API key. Off: it needs the read scope, "
        "since its labels name experiments and variants.",
    )
    metrics_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long GET /metrics reuses the per-experiment state it read from the "
        "database (one query); lags are still computed at every scrape.",
    )
    webhooks_enabled: bool = Field(
        True,
        description="Run the webhook delivery worker inside the service process (several "
        "processes may run it: each delivery is claimed by one).",
    )
    webhook_tick_s: float = Field(
        1.0, gt=0, description="How often the webhook worker looks for deliveries that are due."
    )
    webhook_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Timeout of one webhook POST (connect, send, first byte)."
    )
    webhook_max_attempts: int = Field(
        15,
        ge=1,
        le=100,
        description="Attempts per webhook delivery before it is marked failed (the default "
        "keeps retrying for two to three hours).",
    )
    webhook_backoff_base_s: float = Field(
        1.0,
        gt=0,
        description="Delay before the first webhook retry; it doubles with each failed attempt "
        "(with jitter: between half and all of it).",
    )
    webhook_backoff_max_s: float = Field(
        3600.0, gt=0, description="Longest delay between two attempts of a webhook delivery."
    )
    drift_reference_s: float = Field(
        86400.0,
        gt=0,
        description="Drift checks: the reference window is this long from the experiment's start.",
    )
    drift_recent_s: float = Field(
        3600.0,
        gt=0,
        description="Drift checks: the recent window compared with the reference is this long "
        "(ending now; for reward drift, ending where reward windows have closed).",
    )
    drift_min_decisions: int = Field(
        200,
        ge=20,
        description="Drift checks: an experiment is checked only with at least this many "
        "decisions in each window.",
    )
    drift_max_rows: int = Field(
        20000,
        ge=100,
        description="Drift checks: at most this many (most recent) decisions are read from each "
        "window.",
    )
    drift_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Drift checks: a PSI of 0.25 or more raises an alert only if sampling noise "
        "explains it with p below this; also the Holm-adjusted level of reward drift.",
    )
    drift_check_interval_s: float = Field(
        300.0,
        gt=0,
        description="Drift checks run at most this often (each reads up to twice "
        "CROUPIER_DRIFT_MAX_ROWS decisions per running experiment).",
    )

    @property
    def max_commit_delay_s(self) -> float | None:
        """How long after being made a decision or outcome may still commit (see above)."""
        return self.learner_safety_lag_s / 2 if self.learner_safety_lag_s > 0 else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
