"""Policy versions: what the learner computed, from which statistics, up to which time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDoc, UTCDateTime, utcnow


class PolicyVersion(Base):
    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("experiment_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    # app.bandits.PolicyState.to_json(): the allocation deciders sample from, and diagnostics.
    state: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    model: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Cumulative per-arm sufficient statistics this version was computed from, by variant key.
    stats: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    # Decisions made at or before this instant whose reward window had closed are included.
    closed_through: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decisions_counted: Mapped[int] = mapped_column(Integer, default=0)
    learner: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
