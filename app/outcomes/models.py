"""Outcomes: rewards and other metrics reported for a decision."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Outcome(Base):
    __tablename__ = "outcomes"
    __table_args__ = (
        # A retried outcome is a duplicate, never counted twice.
        UniqueConstraint("decision_id", "metric", "dedup_key"),
        Index("ix_outcomes_experiment_id_received_at", "experiment_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"))
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    # The client's outcome_id, or a digest of (value, timestamp) when it sent none.
    dedup_key: Mapped[str] = mapped_column(String(64))
