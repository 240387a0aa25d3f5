"""The report's SQL: per (period, arm) aggregates, never rows. Everything is cut at `as_of`.

* `metric_cells`: for one metric, per (period, arm): decisions counted, sum and sum of squares
  of the metric's value, and the inverse-propensity sums (sum v/p, sum v^2/p^2, sum 1/p) the
  off-policy estimates need. Only *closed* decisions count (decided at least a reward window
  before as_of: their value is final) and only outcomes received by as_of.
* `traffic_cells`: every experimental decision by as_of, per (period, arm, policy version):
  the traffic table, the allocation over time and the SRM expectation.

A period is [start + k * width, start + (k + 1) * width): its index is computed in SQL from the
decision time (`app.db.epoch_seconds`), so the database returns one row per (period, arm).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Integer, Subquery, cast, func, select
from sqlalchemy.orm import Session

from app.db import epoch_seconds
from app.decisions.models import Decision
from app.experiments.models import Experiment
from app.learning.service import metric_value
from app.outcomes.models import Outcome


@dataclass(frozen=True, slots=True)
class MetricCell:
    period: int
    arm: int
    n: int
    total: float
    sum_squares: float
    ips_total: float
    ips_sum_squares: float
    inverse_propensity: float
    inverse_propensity_squares: float
    minimum: float
    maximum: float


@dataclass(frozen=True, slots=True)
class TrafficCell:
    period: int
    arm: int
    policy_version: int
    n: int


def analysed(
    experiment: Experiment, *, decided_by: datetime, decided_from: datetime | None = None
) -> list[ColumnElement[bool]]:
    """The decisions a report analyses: the experiment's experimental, non-fallback decisions
    made by `decided_by` (and at or after `decided_from`, when given)."""
    window = [
        Decision.experiment_id == experiment.id,
        Decision.experimental.is_(True),
        Decision.fallback.is_(False),
        Decision.decided_at <= decided_by,
    ]
    if decided_from is not None:
        window.append(Decision.decided_at >= decided_from)
    return window


def _period(start: datetime, width_s: float) -> ColumnElement[int]:
    offset = epoch_seconds(Decision.decided_at) - start.timestamp()
    return cast(func.floor(offset / width_s), Integer)


def outcome_values(
    experiment: Experiment,
    metric: str,
    *,
    received_by: datetime,
    received_from: datetime | None = None,
) -> Subquery:
    """(decision_id, v): each decision's value of `metric`, one row per decision that has one.

    The same value as `app.learning.service.metric_value` (the aggregate, earliest or sum, of
    its non-late outcomes received by `received_by`), computed for all decisions at once: one
    pass over the experiment's outcomes instead of a lookup per decision, which is what a
    report over millions of decisions needs (the learner, counting a few new decisions at a
    time, keeps the lookup). A test checks both give the same statistics.
    """
    mine = [
        Outcome.experiment_id == experiment.id,
        Outcome.metric == metric,
        Outcome.late.is_(False),
        Outcome.received_at <= received_by,
    ]
    if received_from is not None:
        # Only decisions made from then on are wanted, and an outcome is received after its
        # decision was made: older outcomes cannot belong to them (the index on
        # (experiment_id, received_at) skips them).
        mine.append(Outcome.received_at >= received_from)
    if experiment.reward_aggregation == "sum":
        return (
            select(Outcome.decision_id, func.sum(Outcome.value).label("v"))
            .where(*mine)
            .group_by(Outcome.decision_id)
            .subquery()
        )
    ranked = (
        select(
            Outcome.decision_id,
            Outcome.value,
            func.row_number()
            .over(partition_by=Outcome.decision_id, order_by=(Outcome.occurred_at, Outcome.id))
            .label("rank"),
        )
        .where(*mine)
        .subquery()
    )
    return (
        select(ranked.c.decision_id, ranked.c.value.label("v")).where(ranked.c.rank == 1).subquery()
    )


def metric_cells(
    *,
    session: Session,
    experiment: Experiment,
    metric: str,
    missing: float | None,
    as_of: datetime,
    start: datetime,
    width_s: float,
    decided_from: datetime | None = None,
) -> list[MetricCell]:
    """Decisions closed by as_of (and made at or after `decided_from`, when given)."""
    closed_through = as_of - timedelta(seconds=experiment.reward_window_s)
    window = analysed(experiment, decided_by=closed_through, decided_from=decided_from)
    period = _period(start, width_s).label("period")
    if session.get_bind().dialect.name == "postgresql":
        # One pass over the outcomes, hash-joined to the decisions (parallel on PostgreSQL).
        values = outcome_values(experiment, metric, received_by=as_of, received_from=decided_from)
        found: ColumnElement[float] = values.c.v
        rows = (
            select(period, Decision.arm.label("arm"), Decision.propensity.label("p"))
            .add_columns((found if missing is None else func.coalesce(found, missing)).label("v"))
            .select_from(Decision)
            .outerjoin(values, values.c.decision_id == Decision.id)
            .where(*window)
            .subquery()
        )
    else:
        # SQLite: a lookup per decision on the unique (decision_id, metric, dedup_key) index.
        # OFFSET 0 keeps the subquery from being merged into the aggregate, which would repeat
        # the lookup for every use of v.
        rows = (
            select(
                period,
                Decision.arm.label("arm"),
                Decision.propensity.label("p"),
                metric_value(experiment, metric, missing=missing, received_by=as_of).label("v"),
            )
            .where(*window)
            .offset(0)
            .subquery()
        )
    v, p = rows.c.v, rows.c.p
    query = (
        select(
            rows.c.period,
            rows.c.arm,
            func.count(v),
            func.sum(v),
            func.sum(v * v),
            func.sum(v / p),
            func.sum(v * v / (p * p)),
            func.sum(1.0 / p),
            func.sum(1.0 / (p * p)),
            func.min(v),
            func.max(v),
        )
        .where(v.is_not(None))
        .group_by(rows.c.period, rows.c.arm)
    )
    return [
        MetricCell(int(period), int(arm), int(n), *(float(x or 0.0) for x in sums))
        for period, arm, n, *sums in session.execute(query)
    ]


def traffic_cells(
    *,
    session: Session,
    experiment: Experiment,
    as_of: datetime,
    start: datetime,
    width_s: float,
    decided_from: datetime | None = None,
) -> list[TrafficCell]:
    period = _period(start, width_s).label("period")
    window = analysed(experiment, decided_by=as_of, decided_from=decided_from)
    query = (
        select(period, Decision.arm, Decision.policy_version, func.count())
        .where(*window)
        .group_by(period, Decision.arm, Decision.policy_version)
    )
    return [TrafficCell(int(p), int(a), int(v), int(n)) for p, a, v, n in session.execute(query)]
