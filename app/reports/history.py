"""Write a history of decisions and outcomes straight into the database.

For the demo data and for tests and benchmarks that need a long history at once (days of
traffic in a second): the rows are exactly what the decide and outcome endpoints store, written
with multi-row inserts instead of one request each. Never used on the serving path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.decisions.models import Decision
from app.experiments.models import Experiment
from app.learning.models import PolicyVersion
from app.outcomes.models import Outcome

CHUNK = 5_000


@dataclass(frozen=True)
class History:
    """One row per decision. `probabilities[i]` is the vector served (sums to 1); `version[i]`
    the policy version that served it (every version must be in `versions`)."""

    decided_at: Sequence[datetime]
    arm: npt.NDArray[np.intp]
    probabilities: npt.NDArray[np.float64]
    version: npt.NDArray[np.intp]
    outcomes: Mapping[str, npt.NDArray[np.float64]]
    """metric -> value per decision; NaN: no outcome for that decision."""
    versions: Mapping[int, tuple[datetime, Sequence[float]]]
    """version number -> (published at, allocation)."""
    outcome_delay: timedelta = timedelta(seconds=1)


def from_decision_log(
    *,
    arm: npt.NDArray[np.intp],
    probabilities: npt.NDArray[np.float64],
    reward: npt.NDArray[np.float64],
    decided_at: Sequence[datetime],
    update_interval: int,
    metric: str,
) -> History:
    """A simulated run (e.g. `simulations.engine.DecisionLog`: arms, served vectors, 0/1
    rewards) as a history: one policy version per block of `update_interval` decisions,
    published a second before the block's first decision; a reward of 1 is an outcome."""
    blocks = np.arange(len(decided_at)) // update_interval
    versions = {
        int(b) + 1: (
            decided_at[int(b) * update_interval] - timedelta(seconds=1),
            [float(p) for p in probabilities[int(b) * update_interval]],
        )
        for b in np.unique(blocks)
    }
    return History(
        decided_at=decided_at,
        arm=arm,
        probabilities=probabilities,
        version=blocks + 1,
        outcomes={metric: np.where(reward > 0, 1.0, np.nan)},
        versions=versions,
    )


def write_history(
    *, session: Session, experiment: Experiment, history: History, id_prefix: str
) -> int:
    """Insert the versions (those not stored yet), decisions and outcomes; returns decisions."""
    keys = [v.key for v in experiment.variants]
    variant_ids = [v.id for v in experiment.variants]
    stored = {
        n
        for (n,) in session.execute(
            PolicyVersion.__table__.select()
            .with_only_columns(PolicyVersion.number)
            .where(PolicyVersion.experiment_id == experiment.id)
        )
    }
    for number, (at, allocation) in sorted(history.versions.items()):
        if number in stored:
            continue
        session.add(
            PolicyVersion(
                experiment_id=experiment.id,
                number=number,
                kind=experiment.policy["type"],
                state={"probabilities": [float(p) for p in allocation], "details": {}},
                stats={},
                closed_through=None,
                decisions_counted=0,
                learner="history",
                created_at=at,
            )
        )
    if history.versions:
        experiment.policy_version = max(experiment.policy_version, max(history.versions))
    session.flush()
    n = len(history.decided_at)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        decisions = []
        outcomes = []
        for i in range(lo, hi):
            arm = int(history.arm[i])
            vector = history.probabilities[i]
            decision_id = f"{id_prefix}-{i}"
            decisions.append(
                {
                    "id": decision_id,
                    "experiment_id": experiment.id,
                    "unit_id": f"{id_prefix}-unit-{i}",
                    "variant_id": variant_ids[arm],
                    "arm": arm,
                    "propensity": float(vector[arm]),
                    "probabilities": dict(zip(keys, map(float, vector), strict=True)),
                    "policy_version": int(history.version[i]),
                    "context": None,
                    "decided_at": history.decided_at[i],
                    "fallback": False,
                    "experimental": True,
                }
            )
            at = history.decided_at[i] + history.outcome_delay
            for metric, values in history.outcomes.items():
                value = float(values[i])
                if value == value:  # not NaN
                    outcomes.append(
                        {
                            "decision_id": decision_id,
                            "experiment_id": experiment.id,
                            "metric": metric,
                            "value": value,
                            "occurred_at": at,
                            "received_at": at,
                            "late": False,
                            "dedup_key": "history",
                        }
                    )
        session.execute(insert(Decision), decisions)
        if outcomes:
            session.execute(insert(Outcome), outcomes)
    return n
