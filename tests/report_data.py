"""Seeded experiment histories for the report tests (written with app.reports.history)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import update

from app.db import transaction, utcnow
from app.experiments import service as experiments
from app.experiments.models import Experiment
from app.learning.models import PolicyVersion
from app.reports.history import History, write_history


def backdate(sessions: Any, key: str, started: datetime) -> None:
    """Pretend the experiment started at `started` (its first version too)."""
    with transaction(sessions) as session:
        experiment = experiments.get(session=session, key=key)
        experiment.started_at = started
        session.execute(
            update(PolicyVersion)
            .where(PolicyVersion.experiment_id == experiment.id, PolicyVersion.number == 1)
            .values(created_at=started)
        )


def fixed_split(
    sessions: Any,
    key: str,
    *,
    means: list[float],
    n: int,
    seed: int,
    hours: float = 24.0,
    weights: list[float] | None = None,
    served: list[float] | None = None,
    metrics: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """An A/B history over the last `hours`: arms drawn with `served` (default: the weights the
    experiment logs), Bernoulli primary metric `reward` with `means`, extra Bernoulli metrics.
    Returns the raw arrays, for checking the report against the statistics engine."""
    rng = np.random.default_rng(seed)
    k = len(means)
    logged = np.asarray(weights or [1.0 / k] * k)
    draw = np.asarray(served or logged)
    end = utcnow() - timedelta(minutes=5)
    start = end - timedelta(hours=hours)
    arm = rng.choice(k, size=n, p=draw / draw.sum())
    offsets = np.sort(rng.uniform(0, hours * 3600, size=n))
    decided = [start + timedelta(seconds=float(s)) for s in offsets]
    reward = (rng.random(n) < np.asarray(means)[arm]).astype(float)
    outcomes = {"reward": np.where(reward > 0, 1.0, np.nan)}
    extra = {}
    for metric, metric_means in (metrics or {}).items():
        values = (rng.random(n) < np.asarray(metric_means)[arm]).astype(float)
        extra[metric] = values
        outcomes[metric] = np.where(values > 0, 1.0, np.nan)
    backdate(sessions, key, start - timedelta(seconds=1))
    with transaction(sessions) as session:
        experiment = experiments.get(session=session, key=key)
        write_history(
            session=session,
            experiment=experiment,
            history=History(
                decided_at=decided,
                arm=arm,
                probabilities=np.tile(logged, (n, 1)),
                version=np.ones(n, dtype=np.intp),
                outcomes=outcomes,
                versions={},
            ),
            id_prefix=key,
        )
    return {"arm": arm, "reward": reward, "extra": extra, "start": start}


def experiment(sessions: Any, key: str) -> Experiment:
    with sessions() as session:
        return experiments.get(session=session, key=key)
