"""Decisions: one row per exposure, written before the response is sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDoc, UTCDateTime


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        # Time-range aggregation by the learner and reports.
        Index("ix_decisions_experiment_id_decided_at", "experiment_id", "decided_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(String(256))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    arm: Mapped[int] = mapped_column(Integer)
    propensity: Mapped[float] = mapped_column(Float)
    # {variant_key: probability} of every variant at decision time.
    probabilities: Mapped[dict[str, float]] = mapped_column(JSONDoc)
    policy_version: Mapped[int] = mapped_column(Integer)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    # False when the answer was not drawn by the experiment's policy (paused, concluded,
    # outside coverage): such rows are exposures but never learned from or analysed.
    experimental: Mapped[bool] = mapped_column(Boolean, default=True)
