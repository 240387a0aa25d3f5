"""The learner's contextual half: closed decisions -> Vowpal Wabbit, online -> a model version.

Non-contextual bandits learn from per-arm sums the database computes; a contextual model needs
each decision's context, so closed decisions stream through Python (ordered by decision time,
in chunks) into `ContextualLearner`: cost = -reward, the logged propensity as the label's
probability. The model resumes from the previous version's bytes when they were trained under
the experiment's current settings (same fingerprint); otherwise (first model, changed
exploration, interactions, ...) it is trained afresh from every closed decision, which is sound
because every decision's propensity was logged.

Each version records its training statistics in `state.details.model`: examples seen in total
and in this pass, VW's progressive-validation loss, and the progressive IPS estimate of the
value of the policy on this pass's decisions (each decision scored by the model before it
learned from it) with its confidence interval.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from app.bandits import ArmStats, ContextualPolicy
from app.bandits.base import PolicyState
from app.decisions.models import Decision
from app.experiments.models import Experiment
from app.learning import service
from app.learning.models import PolicyVersion
from app.stats.ope import InversePropensityScore, LoggedFeedback
from app.stats.sufficient import StatsInputError

log = logging.getLogger("croupier.learner")

CHUNK = 5_000


def closed_rows(
    *,
    session: Session,
    experiment: Experiment,
    rewards: ColumnElement[float],
    after: datetime | None,
    through: datetime,
) -> Iterator[tuple[dict[str, Any] | None, int, float, float]]:
    """(context, arm, propensity, reward) of experimental decisions decided in (after, through],
    oldest first, streamed in chunks."""
    query = (
        select(Decision.context, Decision.arm, Decision.propensity, rewards)
        .where(*service.learning_window(experiment, after=after, through=through))
        .order_by(Decision.decided_at, Decision.id)
        .execution_options(yield_per=CHUNK)
    )
    for context, arm, propensity, reward in session.execute(query):
        yield context, int(arm), float(propensity), float(reward)


def ips_summary(
    rewards: Sequence[float], propensities: Sequence[float], target: Sequence[float]
) -> dict[str, Any]:
    """The progressive IPS estimate of the policy's value, or why there is none."""
    try:
        result = InversePropensityScore().estimate_interval(
            LoggedFeedback(
                reward=np.asarray(rewards),
                propensity=np.asarray(propensities),
                target_probability=np.asarray(target),
            )
        )
    except StatsInputError as exc:
        return {"estimate": None, "note": str(exc)}
    return {
        "estimate": result.estimate,
        "std_error": result.std_error,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "n": result.n,
    }


def compute(
    *,
    session: Session,
    experiment: Experiment,
    policy: ContextualPolicy,
    previous: PolicyVersion | None,
    through: datetime,
    rewards: ColumnElement[float],
) -> service.Proposal | service.PassResult:
    fingerprint = policy.fingerprint()
    trained = (previous.state.get("details") or {}).get("model") if previous else None
    # Resume the previous version (its model, or a fresh one when it has none) if it was
    # trained under the current settings; otherwise retrain on every closed decision.
    resume = (
        previous is not None
        and isinstance(trained, dict)
        and trained.get("fingerprint") == fingerprint
    )
    after = previous.closed_through if resume and previous is not None else None
    if after is not None and through <= after:
        return service.PassResult(experiment.key, None, 0)
    learner = policy.learner(previous.model if resume and previous is not None else None)
    seen_before = int(trained.get("examples", 0)) if resume and isinstance(trained, dict) else 0
    n_arms = policy.n_arms
    logged_rewards: list[float] = []
    propensities: list[float] = []
    arms: list[int] = []
    pmfs: list[list[float]] = []
    try:
        for context, arm, propensity, reward in closed_rows(
            session=session, experiment=experiment, rewards=rewards, after=after, through=through
        ):
            pmfs.append(learner.learn_raw(context, arm, reward, propensity))
            logged_rewards.append(reward)
            propensities.append(propensity)
            arms.append(arm)
        counted = len(logged_rewards)
        if counted == 0:
            return service.PassResult(experiment.key, None, 0)
        model = learner.model()
        loss = learner.progressive_loss()
    finally:
        learner.close()
    floored = policy.floored_rows(pmfs)  # each decision's pmf before the model learned it
    target = floored[np.arange(counted), arms]
    y = np.asarray(logged_rewards)
    delta = [
        ArmStats(int(mask.sum()), float(y[mask].sum()), float((y[mask] ** 2).sum()))
        for mask in (np.asarray(arms) == a for a in range(n_arms))
    ]
    base = service.stats_from_version(experiment, previous) if resume else [ArmStats()] * n_arms
    stats = [a + b for a, b in zip(base, delta, strict=True)]
    allocation = floored.mean(axis=0)
    details = {
        "model": {
            "fingerprint": fingerprint,
            "vw_args": " ".join(policy.vw_args()),
            "resumed_from": previous.number if resume and previous is not None else None,
            "examples": seen_before + counted,
            "new_examples": counted,
            "progressive_loss": loss if loss is not None and math.isfinite(loss) else None,
            "ips_value": ips_summary(logged_rewards, propensities, target.tolist()),
            "bytes": len(model),
        },
        "allocation": "mean probability of each variant over this pass's decisions",
        "policy": dict(experiment.policy),
    }
    state = PolicyState(tuple((allocation / allocation.sum()).tolist()), details)
    return service.Proposal(experiment.policy_version, state, stats, through, counted, model=model)
