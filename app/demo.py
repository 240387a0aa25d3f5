"""Demo data: on an empty database, `croupier serve` (so `make run`) creates two clearly
labelled experiments with three days of simulated traffic, so a newcomer opening
http://127.0.0.1:8000/ sees real reports. `CROUPIER_DEMO=false` turns it off.

The traffic is made by the simulation code (`simulations.engine`, the service's own policies)
and written with `app.reports.history.write_history`, exactly as the decide and outcome
endpoints would have stored it:

* `demo-ab`: an A/B test of two ranking models, fixed 50/50 split; the new model converts
  11.5% against 10%, with an error-rate guardrail it leaves alone;
* `demo-bandit`: a Thompson-sampling bandit over three price points whose conversion rates
  drift (the best one changes after a day), learning every 20 minutes of traffic.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.experiments import service as experiments
from app.experiments.models import Experiment
from app.experiments.schemas import ExperimentCreate
from app.reports.history import History, from_decision_log, write_history

DEMO_PREFIX = "demo-"
LABEL = "DEMO (simulated data)"
DAYS = 3.0


def is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Experiment))


def seed_demo(sessions: sessionmaker[Session], *, now: datetime | None = None) -> list[str]:
    """Create and fill the demo experiments if the database has no experiment at all.

    Returns the keys created (none when the database was not empty)."""
    now = now or utcnow()
    try:
        with transaction(sessions) as session:
            if not is_empty(session):
                return []
            _ab(session, now)
            _bandit(session, now)
    except IntegrityError:  # another process seeded it at the same moment
        return []
    return ["demo-ab", "demo-bandit"]


def _create(session: Session, body: dict[str, Any], started: datetime) -> Experiment:
    experiment = experiments.create(
        session=session, data=ExperimentCreate.model_validate(body), actor="demo"
    )
    experiments.transition(session=session, key=experiment.key, action="start", actor="demo")
    experiment.started_at = started
    session.flush()
    return experiment


def _times(start: datetime, n: int, rng: np.random.Generator) -> list[datetime]:
    seconds = np.sort(rng.uniform(0.0, DAYS * 86400.0, size=n))
    return [start + timedelta(seconds=float(s)) for s in seconds]


def _ab(session: Session, now: datetime) -> None:
    from simulations.engine import run_replicate
    from simulations.scenario import scenario_from_dict

    n = 24_000
    scenario = scenario_from_dict(
        {
            "name": "demo-ab",
            "horizon": n,
            "update_interval": n,
            "seed": 20261127,
            "environment": {"kind": "bernoulli", "means": [0.10, 0.115]},
            "policies": [{"type": "fixed"}],
        }
    )
    log = run_replicate(scenario, scenario.policies[0], 0, keep_log=True).log
    assert log is not None
    start = now - timedelta(days=DAYS, minutes=10)
    experiment = _create(
        session,
        {
            "key": "demo-ab",
            "name": f"{LABEL}: ranking model v2 vs v1",
            "description": "Simulated A/B test created by `croupier serve` on an empty "
            "database (CROUPIER_DEMO=false turns it off). v2 converts 11.5% against 10%.",
            "variants": [
                {"key": "model-v1", "payload": {"model": "ranker:v1"}, "is_control": True},
                {"key": "model-v2", "payload": {"model": "ranker:v2"}},
            ],
            "policy": {"type": "fixed"},
            "primary_metric": "conversion",
            "reward_window_s": 3600,
            "analysis": {
                "planned_decisions": 40_000,
                "guardrails": [{"metric": "error", "tolerance": 0.1}],
                "secondary": [{"metric": "revenue", "missing": "zero", "higher_is_better": True}],
            },
        },
        start,
    )
    rng = np.random.default_rng(7)
    error = (rng.random(n) < 0.01).astype(float)
    revenue = np.where(log.reward > 0, rng.gamma(2.0, 20.0, size=n), 0.0)
    write_history(
        session=session,
        experiment=experiment,
        history=History(
            decided_at=_times(start, n, rng),
            arm=log.arm,
            probabilities=log.probabilities,
            version=np.ones(n, dtype=np.intp),
            outcomes={
                "conversion": np.where(log.reward > 0, 1.0, np.nan),
                "error": np.where(error > 0, 1.0, np.nan),
                "revenue": np.where(revenue > 0, revenue, np.nan),
            },
            versions={},
        ),
        id_prefix="demo-ab",
    )
    _backdate_first_version(session, experiment, start)


def _bandit(session: Session, now: datetime) -> None:
    from simulations.engine import run_replicate
    from simulations.scenario import scenario_from_dict

    n, block = 18_000, 250
    scenario = scenario_from_dict(
        {
            "name": "demo-bandit",
            "horizon": n,
            "update_interval": block,
            "seed": 2026,
            "environment": {
                "kind": "drift",
                "start_means": [0.05, 0.08, 0.06],
                "end_means": [0.05, 0.04, 0.09],
                "change_at": n // 3,
            },
            "policies": [{"type": "thompson", "params": {"min_probability": 0.05}}],
        }
    )
    log = run_replicate(scenario, scenario.policies[0], 0, keep_log=True).log
    assert log is not None
    start = now - timedelta(days=DAYS, minutes=10)
    experiment = _create(
        session,
        {
            "key": "demo-bandit",
            "name": f"{LABEL}: price point bandit",
            "description": "Simulated Thompson-sampling bandit created by `croupier serve` on an "
            "empty database. The best price changes after a day: compare the naive means with "
            "the inverse-propensity estimates.",
            "variants": [
                {"key": "price-9", "payload": {"price": 9}, "is_control": True},
                {"key": "price-12", "payload": {"price": 12}},
                {"key": "price-15", "payload": {"price": 15}},
            ],
            "policy": {"type": "thompson", "min_probability": 0.05},
            "primary_metric": "conversion",
            "reward_window_s": 3600,
            "analysis": {"planned_decisions": 30_000},
        },
        start,
    )
    step = DAYS * 86400.0 / n
    decided = [start + timedelta(seconds=step * (i + 0.5)) for i in range(n)]
    write_history(
        session=session,
        experiment=experiment,
        history=from_decision_log(
            arm=log.arm,
            probabilities=log.probabilities,
            reward=log.reward,
            decided_at=decided,
            update_interval=block,
            metric="conversion",
        ),
        id_prefix="demo-bandit",
    )
    _backdate_first_version(session, experiment, start)


def _backdate_first_version(session: Session, experiment: Experiment, at: datetime) -> None:
    from app.learning.models import PolicyVersion

    version = session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.experiment_id == experiment.id, PolicyVersion.number == 1
        )
    )
    if version is not None:
        version.created_at = at
