"""Experiments, their variants and the append-only revision log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONDoc, UTCDateTime, utcnow

STATUSES = (
    "draft",
    "running",
    "paused",
    "rolling_out",
    "rolled_back",
    "concluded",
    "archived",
)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # {"type": "thompson", "min_probability": 0.05, ...}: the bandit core's settings.
    policy: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    update_interval_s: Mapped[float] = mapped_column(Float, default=60.0)
    salt: Mapped[str] = mapped_column(String(64))
    coverage: Mapped[float] = mapped_column(Float, default=1.0)
    primary_metric: Mapped[str] = mapped_column(String(64), default="reward")
    reward_window_s: Mapped[float] = mapped_column(Float)
    default_reward: Mapped[float] = mapped_column(Float, default=0.0)
    reward_aggregation: Mapped[str] = mapped_column(String(16), default="earliest")
    # The declared analysis plan (app.experiments.schemas.AnalysisPlan as JSON): what the
    # report tests, at which alpha, with which guardrails; {} takes every default.
    analysis: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    winner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The automatic rollout policy (app.experiments.schemas.RolloutPolicy as JSON), or None.
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    # Bumped on every change a decider must see (config, status, new policy version): the
    # deciders' cheap check compares this one integer per experiment.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    policy_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    variants: Mapped[list[Variant]] = relationship(
        back_populates="experiment",
        order_by="Variant.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (
        UniqueConstraint("experiment_id", "key"),
        UniqueConstraint("experiment_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)  # arm index in the policy's vectors
    payload: Mapped[Any] = mapped_column(JSONDoc, nullable=True)
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)

    experiment: Mapped[Experiment] = relationship(back_populates="variants")


class ExperimentRevision(Base):
    """Append-only: one row per configuration or status change, with who and what."""

    __tablename__ = "experiment_revisions"
    __table_args__ = (UniqueConstraint("experiment_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    actor: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
