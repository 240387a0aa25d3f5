"""Hourly rollups: the report's per-(hour, arm) aggregates of decisions that can no longer change.

A report over millions of decisions would otherwise re-aggregate them all every time. Once an
hour [h, h + 1 h) is *final* its aggregates never change again:

* traffic: every decision of the hour is committed, i.e. (h + 1 h) + SETTLE_S has passed
  (decisions commit within half the learner's safety lag of being stamped, far below SETTLE_S);
* a metric: every decision of the hour is closed and every outcome it will ever count has
  arrived: a non-late outcome arrives within the reward window, so (h + 1 h) + reward_window_s
  + SETTLE_S has passed.

The learner (`app.learning.runner`) rolls final hours up after each pass (`roll_up`); a report
reads the rollups for hours final by its `as_of` and aggregates only the decisions after them
from the raw tables, so its cost follows the recent traffic, not the whole history. The result
is the same either way (tested): the same sums, only added in another order.

Rollups are per metric and per value of `missing` (what a decision without outcome counts as);
a mark records how far each is rolled up. The analysis plan is fixed while an experiment is
live, so the marks stay valid; a mark whose `missing` differs is rebuilt from the start.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction
from app.experiments.models import Experiment
from app.reports import queries
from app.reports.models import MetricRollup, RollupMark, TrafficRollup

log = logging.getLogger("croupier.rollups")

HOUR_S = 3600.0
SETTLE_S = 300.0
"""Margin after which decisions and outcomes of a past hour are surely committed."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TRAFFIC = ""


def hour_start(hour: int) -> datetime:
    return EPOCH + timedelta(seconds=hour * HOUR_S)


def final_hour(at: datetime, lag_s: float) -> int:
    """The first hour that is not final at `at` (hours before it are)."""
    return math.floor(((at - EPOCH).total_seconds() - lag_s - SETTLE_S) / HOUR_S)


def metric_lag(experiment: Experiment) -> float:
    return float(experiment.reward_window_s)


def roll_up(
    *,
    sessions: sessionmaker[Session],
    experiment_key: str,
    metrics: Sequence[tuple[str, float | None]],
    now: datetime,
) -> int:
    """Roll up every hour final at `now` not rolled up yet: traffic, then each (metric,
    missing). Aggregates in a read-only session, then writes in one short transaction that
    only applies if no one rolled up meanwhile. Returns the number of rows written."""
    from app.experiments import service as experiments

    written = 0
    for metric, missing in [(TRAFFIC, None), *metrics]:
        with sessions() as session:
            experiment = experiments.get(session=session, key=experiment_key)
            if experiment.started_at is None:
                return written
            mark = _mark(session, experiment.id, metric)
            lag = 0.0 if metric == TRAFFIC else metric_lag(experiment)
            start = _start_hour(experiment)
            begin = start if mark is None or mark.missing != missing else mark.through_hour
            end = final_hour(now, lag)
            if end <= begin:
                continue
            rows = _cells(session, experiment, metric, missing, begin, end)
            experiment_id = experiment.id
        with transaction(sessions) as session:
            current = _mark(session, experiment_id, metric)
            expected = None if mark is None else (mark.through_hour, mark.missing)
            found = None if current is None else (current.through_hour, current.missing)
            if found != expected:
                continue  # someone else rolled up meanwhile
            if current is None or current.missing != missing:
                _clear(session, experiment_id, metric)
            if current is None:
                session.add(
                    RollupMark(
                        experiment_id=experiment_id,
                        metric=metric,
                        missing=missing,
                        through_hour=end,
                    )
                )
            else:
                current.missing = missing
                current.through_hour = end
            if rows:
                table = TrafficRollup if metric == TRAFFIC else MetricRollup
                session.execute(insert(table), rows)
            written += len(rows)
    return written


def _start_hour(experiment: Experiment) -> int:
    assert experiment.started_at is not None
    return math.floor((experiment.started_at - EPOCH).total_seconds() / HOUR_S)


def _mark(session: Session, experiment_id: int, metric: str) -> RollupMark | None:
    return session.scalar(
        select(RollupMark).where(
            RollupMark.experiment_id == experiment_id, RollupMark.metric == metric
        )
    )


def _clear(session: Session, experiment_id: int, metric: str) -> None:
    if metric == TRAFFIC:
        session.execute(delete(TrafficRollup).where(TrafficRollup.experiment_id == experiment_id))
    else:
        session.execute(
            delete(MetricRollup).where(
                MetricRollup.experiment_id == experiment_id, MetricRollup.metric == metric
            )
        )


def _cells(
    session: Session,
    experiment: Experiment,
    metric: str,
    missing: float | None,
    begin: int,
    end: int,
) -> list[dict[str, object]]:
    """The raw aggregates of hours [begin, end), one row per (hour, arm[, version])."""
    cut = hour_start(end)
    if metric == TRAFFIC:
        traffic = queries.traffic_cells(
            session=session,
            experiment=experiment,
            as_of=cut - timedelta(microseconds=1),
            start=EPOCH,
            width_s=HOUR_S,
            decided_from=hour_start(begin),
        )
        return [
            {
                "experiment_id": experiment.id,
                "hour": c.period,
                "arm": c.arm,
                "policy_version": c.policy_version,
                "n": c.n,
            }
            for c in traffic
            if begin <= c.period < end
        ]
    # Closed by as_of = cut + window: exactly the decisions made before the cut.
    cells = queries.metric_cells(
        session=session,
        experiment=experiment,
        metric=metric,
        missing=missing,
        as_of=cut - timedelta(microseconds=1) + timedelta(seconds=experiment.reward_window_s),
        start=EPOCH,
        width_s=HOUR_S,
        decided_from=hour_start(begin),
    )
    return [
        {
            "experiment_id": experiment.id,
            "metric": metric,
            "hour": c.period,
            "arm": c.arm,
            "n": c.n,
            "total": c.total,
            "sum_squares": c.sum_squares,
            "ips_total": c.ips_total,
            "ips_sum_squares": c.ips_sum_squares,
            "inverse_propensity": c.inverse_propensity,
            "inverse_propensity_squares": c.inverse_propensity_squares,
            "minimum": c.minimum,
            "maximum": c.maximum,
        }
        for c in cells
        # Defensive: a cell outside the hours asked for would be counted twice or never.
        if begin <= c.period < end
    ]


def usable_hour(
    session: Session, experiment: Experiment, metric: str, missing: float | None, as_of: datetime
) -> int | None:
    """The hour before which rollups may stand in for raw rows in a report at `as_of`: rolled
    up, and already final at as_of (so the rollup holds nothing as_of could not see)."""
    mark = _mark(session, experiment.id, metric)
    if mark is None or mark.missing != missing:
        return None
    lag = 0.0 if metric == TRAFFIC else metric_lag(experiment)
    usable = min(mark.through_hour, final_hour(as_of, lag))
    return usable if usable > _start_hour(experiment) else None


def metric_rollups(
    session: Session, experiment: Experiment, metric: str, before: int
) -> list[tuple[int, queries.MetricCell]]:
    """(hour, cell) of every rolled-up hour before `before` (cell.period is the hour)."""
    rows = session.scalars(
        select(MetricRollup).where(
            MetricRollup.experiment_id == experiment.id,
            MetricRollup.metric == metric,
            MetricRollup.hour < before,
        )
    )
    return [
        (
            r.hour,
            queries.MetricCell(
                r.hour,
                r.arm,
                r.n,
                r.total,
                r.sum_squares,
                r.ips_total,
                r.ips_sum_squares,
                r.inverse_propensity,
                r.inverse_propensity_squares,
                r.minimum,
                r.maximum,
            ),
        )
        for r in rows
    ]


def traffic_rollups(
    session: Session, experiment: Experiment, before: int
) -> list[queries.TrafficCell]:
    rows = session.scalars(
        select(TrafficRollup).where(
            TrafficRollup.experiment_id == experiment.id, TrafficRollup.hour < before
        )
    )
    return [queries.TrafficCell(r.hour, r.arm, r.policy_version, r.n) for r in rows]
