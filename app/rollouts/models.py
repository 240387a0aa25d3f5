"""Rollouts: an experiment's automatic move of traffic to its winner, step by step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDoc, UTCDateTime, utcnow


class Rollout(Base):
    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    # ramping | awaiting_approval | completed | rolled_back | cancelled
    state: Mapped[str] = mapped_column(String(24))
    winner: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer, default=0)  # index into the policy's steps
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Experimental decisions logged when the step started (dwell is counted from here).
    step_decisions: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    approved_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The policy version served before the rollout: a rollback serves its allocation again.
    pre_rollout_version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
