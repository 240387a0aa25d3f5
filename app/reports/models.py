"""Hourly rollups of the report's aggregates (see app/reports/rollups.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class RollupMark(Base):
    """Hours before `through_hour` (hours since 1970, UTC) are rolled up for this metric ("" is
    the traffic), with `missing` as the value of a decision without outcome."""

    __tablename__ = "rollup_marks"
    __table_args__ = (UniqueConstraint("experiment_id", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    missing: Mapped[float | None] = mapped_column(Float, nullable=True)
    through_hour: Mapped[int] = mapped_column(BigInteger)


class MetricRollup(Base):
    __tablename__ = "metric_rollups"
    __table_args__ = (UniqueConstraint("experiment_id", "metric", "hour", "arm"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    hour: Mapped[int] = mapped_column(BigInteger)
    arm: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(Float)
    sum_squares: Mapped[float] = mapped_column(Float)
    ips_total: Mapped[float] = mapped_column(Float)
    ips_sum_squares: Mapped[float] = mapped_column(Float)
    inverse_propensity: Mapped[float] = mapped_column(Float)
    inverse_propensity_squares: Mapped[float] = mapped_column(Float)
    minimum: Mapped[float] = mapped_column(Float)
    maximum: Mapped[float] = mapped_column(Float)


class TrafficRollup(Base):
    __tablename__ = "traffic_rollups"
    __table_args__ = (UniqueConstraint("experiment_id", "hour", "arm", "policy_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    hour: Mapped[int] = mapped_column(BigInteger)
    arm: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(BigInteger)
