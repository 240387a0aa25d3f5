"""The learner: closed decisions -> per-arm sufficient statistics (in SQL) -> a new policy version.

A decision is *closed* when its reward window has ended: its reward is then final (the
aggregate of its non-late outcomes for the primary metric, or the experiment's default reward).
Each version stores the cumulative statistics and the instant `closed_through` up to which
decisions were counted, so the next pass only aggregates decisions decided in
(closed_through_prev, closed_through]: every closed decision is counted exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.bandits import ArmStats, ContextualPolicy, PolicyConfigError
from app.bandits.base import PolicyState
from app.db import utcnow
from app.decisions.models import Decision
from app.errors import Conflict, NotFound
from app.experiments.models import Experiment
from app.experiments.policy import build
from app.learning.models import PolicyVersion
from app.outcomes.models import Outcome

log = logging.getLogger("croupier.learner")

LEARNING_POLICIES = frozenset({"thompson", "epsilon_greedy", "ucb1", "contextual"})


@dataclass(frozen=True, slots=True)
class PassResult:
    experiment: str
    version: int | None
    decisions_counted: int
    error: str | None = None


def latest(*, session: Session, experiment_id: int) -> PolicyVersion | None:
    return session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.experiment_id == experiment_id)
        .order_by(PolicyVersion.number.desc())
        .limit(1)
    )


def _stats_by_key(experiment: Experiment, stats: Sequence[ArmStats]) -> dict[str, object]:
    return {v.key: s.to_json() for v, s in zip(experiment.variants, stats, strict=True)}


def stats_from_version(experiment: Experiment, version: PolicyVersion | None) -> list[ArmStats]:
    stored = version.stats if version is not None else {}
    return [
        ArmStats.from_json(stored[v.key]) if v.key in stored else ArmStats()
        for v in experiment.variants
    ]


def _publish(
    *,
    session: Session,
    experiment: Experiment,
    state: PolicyState,
    stats: Sequence[ArmStats],
    closed_through: datetime | None,
    learner: str,
    model: bytes | None = None,
) -> PolicyVersion:
    number = experiment.policy_version + 1
    version = PolicyVersion(
        experiment_id=experiment.id,
        number=number,
        kind=experiment.policy["type"],
        state=state.to_json(),
        model=model,
        stats=_stats_by_key(experiment, stats),
        closed_through=closed_through,
        decisions_counted=sum(s.count for s in stats),
        learner=learner,
        created_at=utcnow(),
    )
    session.add(version)
    experiment.policy_version = number
    experiment.revision += 1  # deciders reload on their next cheap check
    session.flush()
    return version


def publish_initial(*, session: Session, experiment: Experiment, learner: str) -> PolicyVersion:
    """Version 1: what is served before anything is learned (uniform, or the A/B weights)."""
    state = build(experiment).initial_state()
    if experiment.policy["type"] == "contextual":  # the settings a rollback here restores
        state = PolicyState(state.probabilities, {**state.details, "policy": experiment.policy})
    return _publish(
        session=session,
        experiment=experiment,
        state=state,
        stats=[ArmStats()] * len(experiment.variants),
        closed_through=None,
        learner=learner,
    )


def republish(*, session: Session, experiment: Experiment, learner: str) -> PolicyVersion:
    """A new version from the same statistics under changed settings."""
    previous = latest(session=session, experiment_id=experiment.id)
    stats = stats_from_version(experiment, previous)
    policy = build(experiment)
    if isinstance(policy, ContextualPolicy):
        # The model carries on serving (with the new floor at once); the learner sees the
        # settings' new fingerprint and retrains a model under them from the logs.
        return _publish(
            session=session,
            experiment=experiment,
            state=PolicyState.from_json(previous.state) if previous else policy.initial_state(),
            stats=stats,
            closed_through=previous.closed_through if previous else None,
            learner=learner,
            model=previous.model if previous else None,
        )
    state = policy.update(stats) if any(s.count for s in stats) else policy.initial_state()
    return _publish(
        session=session,
        experiment=experiment,
        state=state,
        stats=stats,
        closed_through=previous.closed_through if previous else None,
        learner=learner,
    )


def _reward(experiment: Experiment) -> ColumnElement[float]:
    """The reward of the decision in the enclosing query: the aggregate of its non-late
    outcomes of the primary metric (earliest or sum), or the default reward when it has none."""
    return metric_value(experiment, experiment.primary_metric, missing=experiment.default_reward)


def metric_value(
    experiment: Experiment,
    metric: str,
    *,
    missing: float | None,
    received_by: datetime | None = None,
) -> ColumnElement[float]:
    """The value of `metric` for the decision in the enclosing query: the aggregate (the
    experiment's earliest or sum) of its non-late outcomes of that metric, received by
    `received_by` when given; `missing` when it has none (None: SQL NULL, left out of sums).

    A correlated subquery per decision, so each lookup uses the unique index on
    (decision_id, metric, dedup_key) and the cost stays linear in the number of decisions.
    The learner and the reports both call this: one definition of a decision's reward.
    """
    mine = [
        Outcome.decision_id == Decision.id,
        Outcome.metric == metric,
        Outcome.late.is_(False),
    ]
    if received_by is not None:
        mine.append(Outcome.received_at <= received_by)
    if experiment.reward_aggregation == "sum":
        value = select(func.sum(Outcome.value)).where(*mine)
    else:
        value = (
            select(Outcome.value).where(*mine).order_by(Outcome.occurred_at, Outcome.id).limit(1)
        )
    found = value.correlate(Decision).scalar_subquery()
    return found if missing is None else func.coalesce(found, missing)


def learning_window(
    experiment: Experiment, *, after: datetime | None, through: datetime
) -> list[ColumnElement[bool]]:
    """The decisions a learner pass learns from: experimental ones decided in (after, through]."""
    window = [
        Decision.experiment_id == experiment.id,
        Decision.experimental.is_(True),
        Decision.decided_at <= through,
    ]
    if after is not None:
        window.append(Decision.decided_at > after)
    return window


def aggregate(
    *, session: Session, experiment: Experiment, after: datetime | None, through: datetime
) -> list[ArmStats]:
    """Per-arm (count, sum, sum of squares) of rewards of experimental decisions decided in
    (after, through], computed by the database; rows never come into Python."""
    window = learning_window(experiment, after=after, through=through)
    rewards = select(Decision.arm, _reward(experiment).label("reward")).where(*window).subquery()
    query = select(
        rewards.c.arm,
        func.count(),
        func.sum(rewards.c.reward),
        func.sum(rewards.c.reward * rewards.c.reward),
    ).group_by(rewards.c.arm)
    stats = [ArmStats()] * len(experiment.variants)
    for arm, count, total, squares in session.execute(query):
        stats[arm] = ArmStats(int(count), float(total or 0.0), float(squares or 0.0))
    return stats


@dataclass(frozen=True, slots=True)
class Proposal:
    """A computed next version, published only if nothing changed since it was computed."""

    based_on: int
    state: PolicyState
    stats: list[ArmStats]
    closed_through: datetime
    counted: int
    model: bytes | None = None


def compute(
    *, session: Session, experiment: Experiment, now: datetime, safety_lag_s: float
) -> Proposal | PassResult:
    """The learning step's reading half: no locks taken, so deciders keep writing meanwhile.
    Returns what to publish, or a PassResult when there is nothing to publish."""
    previous = latest(session=session, experiment_id=experiment.id)
    through = now - timedelta(seconds=experiment.reward_window_s + safety_lag_s)
    policy = build(experiment)
    if isinstance(policy, ContextualPolicy):
        from app.learning import contextual  # it builds on this module's Proposal

        return contextual.compute(
            session=session,
            experiment=experiment,
            policy=policy,
            previous=previous,
            through=through,
            rewards=_reward(experiment),
        )
    after = previous.closed_through if previous is not None else None
    if after is not None and through <= after:
        return PassResult(experiment.key, None, 0)
    delta = aggregate(session=session, experiment=experiment, after=after, through=through)
    counted = sum(s.count for s in delta)
    if counted == 0:
        return PassResult(experiment.key, None, 0)
    stats = [a + b for a, b in zip(stats_from_version(experiment, previous), delta, strict=True)]
    try:
        state = policy.update(stats)
    except (PolicyConfigError, ValueError) as exc:
        log.error("learner: experiment %s: %s", experiment.key, exc)
        return PassResult(experiment.key, None, counted, error=str(exc))
    return Proposal(experiment.policy_version, state, stats, through, counted)


def publish_proposal(
    *, session: Session, experiment: Experiment, proposal: Proposal, learner: str
) -> PassResult:
    """The writing half, under the experiment's row lock: publish unless the experiment
    stopped running or another version (say new settings) appeared since `compute`."""
    if experiment.status != "running" or experiment.policy_version != proposal.based_on:
        return PassResult(experiment.key, None, 0)
    version = _publish(
        session=session,
        experiment=experiment,
        state=proposal.state,
        stats=proposal.stats,
        closed_through=proposal.closed_through,
        learner=learner,
        model=proposal.model,
    )
    log.info(
        "learner: %s -> version %d (%d new decisions)",
        experiment.key,
        version.number,
        proposal.counted,
    )
    return PassResult(experiment.key, version.number, proposal.counted)


def due_experiments(*, session: Session, now: datetime) -> list[str]:
    """Keys of running learning experiments whose update interval has passed."""
    last_version = (
        select(func.max(PolicyVersion.created_at))
        .where(PolicyVersion.experiment_id == Experiment.id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Experiment.key, Experiment.policy, Experiment.update_interval_s, last_version)
        .where(Experiment.status == "running")
        .order_by(Experiment.id)
    )
    return [
        key
        for key, policy, interval, last in rows
        if policy["type"] in LEARNING_POLICIES
        and (last is None or last + timedelta(seconds=interval) <= now)
    ]


def versions(*, session: Session, experiment: Experiment) -> list[PolicyVersion]:
    return list(
        session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.experiment_id == experiment.id)
            .order_by(PolicyVersion.number)
        )
    )


def version(*, session: Session, experiment: Experiment, number: int) -> PolicyVersion:
    found = session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.experiment_id == experiment.id, PolicyVersion.number == number
        )
    )
    if found is None:
        raise NotFound(f"experiment {experiment.key!r} has no policy version {number}")
    return found


def rollback(
    *, session: Session, experiment: Experiment, number: int, learner: str
) -> tuple[PolicyVersion, dict[str, Any]]:
    """Serve version `number`'s model again, as a new version (history stays append-only).

    Contextual policies only: their model is the learned state, so the learner resumes from
    the restored model (and the settings it was trained under, restored too) with decisions
    closed from now on; what was learned since `number` is dropped. Other bandits recompute
    their allocation from all statistics at every pass, so a rollback would not last.
    Returns the new version and the settings change ({} when none).
    """
    if experiment.policy["type"] != "contextual":
        raise Conflict(
            f"policy {experiment.policy['type']!r} recomputes its allocation from every "
            "statistic at each learner pass, so a rollback would not last; only contextual "
            "models can be rolled back",
            kind="not-rollbackable",
        )
    if experiment.status not in ("running", "paused"):
        raise Conflict(
            f"experiment {experiment.key!r} is {experiment.status}; only a running or paused "
            "experiment's model can be rolled back",
            kind="invalid-transition",
        )
    target = version(session=session, experiment=experiment, number=number)
    current = latest(session=session, experiment_id=experiment.id)
    assert current is not None, "a started experiment has a version"
    if target.number == current.number:
        raise Conflict(f"version {number} is already the one served", kind="already-served")
    settings = (target.state.get("details") or {}).get("policy")
    changes: dict[str, Any] = {}
    if isinstance(settings, dict) and settings != experiment.policy:
        changes = {"policy": {"from": experiment.policy, "to": settings}}
        experiment.policy = settings
    restored = restore(
        session=session,
        experiment=experiment,
        number=number,
        learner=learner,
        details={"rolled_back_to": target.number},
    )
    return restored, changes


def publish_allocation(
    *,
    session: Session,
    experiment: Experiment,
    probabilities: Sequence[float],
    details: dict[str, Any],
    learner: str,
) -> PolicyVersion:
    """A version serving a fixed split (a rollout step): same statistics and watermark as the
    latest version, so learning resumes where it stopped if the rollout is rolled back."""
    current = latest(session=session, experiment_id=experiment.id)
    return _publish(
        session=session,
        experiment=experiment,
        state=PolicyState(tuple(probabilities), details),
        stats=stats_from_version(experiment, current),
        closed_through=current.closed_through if current else None,
        learner=learner,
        model=current.model if current else None,
    )


def restore(
    *, session: Session, experiment: Experiment, number: int, learner: str, details: dict[str, Any]
) -> PolicyVersion:
    """A new version serving version `number`'s allocation (and model) again, with the latest
    statistics and watermark: history stays append-only."""
    target = version(session=session, experiment=experiment, number=number)
    current = latest(session=session, experiment_id=experiment.id)
    assert current is not None, "a started experiment has a version"
    return _publish(
        session=session,
        experiment=experiment,
        state=PolicyState(
            tuple(target.state["probabilities"]),
            {**(target.state.get("details") or {}), **details},
        ),
        stats=stats_from_version(experiment, current),
        closed_through=current.closed_through,
        learner=learner,
        model=target.model,
    )
