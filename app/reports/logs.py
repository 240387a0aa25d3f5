"""The raw decision log as a DataFrame: the analysts' entry point below the report.

`decisions_frame` returns one row per experimental, non-fallback decision decided by `as_of`
(the rows the report counts), with the metric's value computed by the database with the one
SQL definition of a decision's value (`app.learning.service.metric_value`), so a group-by over
the closed rows gives back the report's per-arm n and mean exactly.

Columns:

* `decision_id`, `unit_id`, `decided_at` (UTC), `arm` (0-based), `variant` (its key),
  `propensity` (the served arm's probability), `policy_version`;
* `closed`: decided at least the experiment's reward window before `as_of`, so its value is
  final; the report's metrics count closed decisions only;
* `value`: the metric's value from outcomes received by `as_of`: the aggregate (earliest or
  sum) of the decision's non-late outcomes, else the missing-value rule the report applies
  (the primary metric: the experiment's default reward; a guardrail or secondary metric with
  `missing = "zero"`: 0; any other metric: NaN). On an open decision it is provisional;
* `reward`: `value` on closed decisions, NaN on open ones. It is the column name
  `simulations.replay.log_from_frame` reads, so
  `log_from_frame(frame[frame.closed], arms=report.experiment.arms)` is a replay log;
* `p_<variant>`: the logged probability vector, one column per variant (it sums to 1).

Rows come back ordered by (decided_at, decision_id) and are streamed from the database in
chunks of plain tuples: no ORM object is made per decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.decisions.models import Decision
from app.experiments.models import Experiment
from app.learning.service import metric_value
from app.reports.queries import analysed
from app.reports.service import metric_specs

CHUNK_ROWS = 50_000
BASE_COLUMNS = (
    "decision_id",
    "unit_id",
    "decided_at",
    "arm",
    "variant",
    "propensity",
    "policy_version",
    "closed",
    "value",
    "reward",
)


def missing_value(experiment: Experiment, metric: str) -> float | None:
    """The value a decision without outcomes of `metric` counts as, as the report counts it:
    the default reward for the primary metric, 0 for a planned metric with missing = "zero",
    otherwise None (the decision is left out of that metric)."""
    for _, name, _, missing in metric_specs(experiment):
        if name == metric:
            return missing
    return None


def probability_columns(experiment: Experiment) -> list[str]:
    return [f"p_{v.key}" for v in experiment.variants]


def decisions_frame(
    *,
    session: Session,
    experiment: Experiment,
    metric: str | None = None,
    as_of: datetime | None = None,
    with_context: bool = False,
) -> pd.DataFrame:
    """One row per experimental, non-fallback decision of `experiment` decided by `as_of`
    (default: now), with `metric`'s value (default: the primary metric). See the module
    docstring for the columns; `with_context` adds `context`, the decision's context (a dict,
    or None)."""
    as_of = utcnow() if as_of is None else as_of
    name = experiment.primary_metric if metric is None else metric
    keys = [v.key for v in experiment.variants]
    p_columns = probability_columns(experiment)
    value = metric_value(
        experiment, name, missing=missing_value(experiment, name), received_by=as_of
    )
    probabilities: list[ColumnElement[float]] = [
        Decision.probabilities[key].as_float().label(column)
        for key, column in zip(keys, p_columns, strict=True)
    ]
    query = (
        select(
            Decision.id.label("decision_id"),
            Decision.unit_id,
            Decision.decided_at,
            Decision.arm,
            Decision.propensity,
            Decision.policy_version,
            value.label("value"),
            *probabilities,
            *([Decision.context.label("context")] if with_context else []),
        )
        .where(*analysed(experiment, decided_by=as_of))
        .order_by(Decision.decided_at, Decision.id)
        .execution_options(yield_per=CHUNK_ROWS)
    )
    result = session.execute(query)
    columns = list(result.keys())
    chunks = [pd.DataFrame.from_records(part, columns=columns) for part in result.partitions()]
    raw = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=columns)

    arm = raw["arm"].to_numpy(dtype=np.int64)
    closed_through = as_of - timedelta(seconds=experiment.reward_window_s)
    decided_at = pd.to_datetime(raw["decided_at"], utc=True)
    values = pd.to_numeric(raw["value"], errors="coerce").astype("float64")
    closed = (decided_at <= pd.Timestamp(closed_through)).astype(bool)
    frame = pd.DataFrame(
        {
            "decision_id": raw["decision_id"].astype(str),
            "unit_id": raw["unit_id"].astype(str),
            "decided_at": decided_at,
            "arm": arm,
            "variant": np.asarray(keys, dtype=object)[arm],
            "propensity": raw["propensity"].astype("float64"),
            "policy_version": raw["policy_version"].to_numpy(dtype=np.int64),
            "closed": closed,
            "value": values,
            "reward": values.where(closed),
        }
    )
    for column in p_columns:
        frame[column] = pd.to_numeric(raw[column], errors="coerce").astype("float64")
    if with_context:
        frame["context"] = raw["context"].astype(object)
    return frame
