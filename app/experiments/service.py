"""Experiment lifecycle: create, change, start/pause/resume/conclude/archive, with a revision
for every change. Functions take keyword-only arguments and run inside the caller's transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.bandits import PolicyConfigError
from app.bandits.rollout import RolloutPolicy
from app.db import utcnow
from app.errors import Conflict, FieldError, Invalid, NotFound, ProblemError
from app.experiments.models import Experiment, ExperimentRevision, Variant
from app.experiments.policy import policy_for
from app.experiments.schemas import (
    AnalysisPlan,
    ExperimentCreate,
    ExperimentUpdate,
    PolicySpec,
    RolloutSpec,
    VariantIn,
)
from app.learning import service as learning_service
from app.learning.models import PolicyVersion

# What may change while units are being exposed: none of it changes what a logged decision or
# outcome means. Variants, weights, salt, reward definition and policy type would.
MUTABLE_WHILE_LIVE = frozenset({"name", "description", "coverage", "policy", "rollout"})
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({"draft"}), "running"),
    "pause": (frozenset({"running", "rolling_out", "rolled_back"}), "paused"),
    # Back to running, or to rolling_out when a rollout was paused mid-way (see transition).
    "resume": (frozenset({"paused", "rolled_back"}), "running"),
    "conclude": (frozenset({"running", "paused", "rolling_out", "rolled_back"}), "concluded"),
    "archive": (frozenset({"draft", "paused", "concluded"}), "archived"),
}


def _check_variants(variants: Sequence[VariantIn], field_prefix: str) -> None:
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        if variant.key in seen:
            raise Invalid(
                f"{field_prefix}.variants[{i}].key",
                "unique",
                f"variant keys must be unique; {variant.key!r} appears twice",
            )
        seen.add(variant.key)
    controls = [v.key for v in variants if v.is_control]
    if len(controls) > 1:
        raise Invalid(
            f"{field_prefix}.variants",
            "one_control",
            f"at most one variant may be the control, got {controls}",
        )


def _check_reward(
    policy: dict[str, Any], default_reward: float, aggregation: str, field_prefix: str
) -> None:
    if not _bernoulli(policy):
        return
    if not 0.0 <= default_reward <= 1.0:
        raise Invalid(
            f"{field_prefix}.default_reward",
            "bernoulli_range",
            f"a Bernoulli bandit's rewards are in [0, 1]; default_reward is {default_reward}",
        )
    if aggregation == "sum":
        raise Invalid(
            f"{field_prefix}.reward_aggregation",
            "bernoulli_aggregation",
            "a Bernoulli bandit's reward per decision is 0 or 1, and a sum of several outcomes "
            "can exceed 1: use reward_aggregation 'earliest' (or reward 'gaussian')",
        )


def _bernoulli(policy: dict[str, Any]) -> bool:
    return policy.get("type") == "thompson" and policy.get("reward", "bernoulli") == "bernoulli"


def reward_range(experiment: Experiment) -> tuple[float, float] | None:
    """The range the primary metric must lie in, when the policy demands one."""
    return (0.0, 1.0) if _bernoulli(experiment.policy) else None


def _policy_doc(spec: PolicySpec) -> dict[str, Any]:
    return {"type": spec.type, **spec.params()}


def _variants(variants: Sequence[VariantIn]) -> list[Variant]:
    has_control = any(v.is_control for v in variants)
    return [
        Variant(
            key=v.key,
            position=i,
            payload=v.payload,
            # Without an explicit control, the first variant is the control.
            is_control=v.is_control or (not has_control and i == 0),
            weight=v.weight,
        )
        for i, v in enumerate(variants)
    ]


def snapshot(experiment: Experiment) -> dict[str, Any]:
    """The configuration as plain JSON, as recorded in revisions."""
    return {
        "name": experiment.name,
        "description": experiment.description,
        "variants": [
            {"key": v.key, "payload": v.payload, "is_control": v.is_control, "weight": v.weight}
            for v in experiment.variants
        ],
        "policy": {**experiment.policy, "update_interval_s": experiment.update_interval_s},
        "rollout": experiment.rollout,
        "coverage": experiment.coverage,
        "salt": experiment.salt,
        "primary_metric": experiment.primary_metric,
        "reward_window_s": experiment.reward_window_s,
        "default_reward": experiment.default_reward,
        "reward_aggregation": experiment.reward_aggregation,
        "analysis": experiment.analysis,
    }


def revise(
    *, session: Session, experiment: Experiment, action: str, changes: dict[str, Any], actor: str
) -> None:
    number = session.scalar(
        select(func.coalesce(func.max(ExperimentRevision.number), 0)).where(
            ExperimentRevision.experiment_id == experiment.id
        )
    )
    session.add(
        ExperimentRevision(
            experiment_id=experiment.id,
            number=(number or 0) + 1,
            action=action,
            changes=changes,
            actor=actor,
            at=utcnow(),
        )
    )
    experiment.revision += 1
    experiment.updated_at = utcnow()


def create(*, session: Session, data: ExperimentCreate, actor: str) -> Experiment:
    _check_variants(data.variants, "body")
    policy = _policy_doc(data.policy)
    policy_for(policy=policy, variants=data.variants)
    _check_reward(policy, data.default_reward, data.reward_aggregation, "body")
    if session.scalar(select(Experiment.id).where(Experiment.key == data.key)) is not None:
        raise Conflict(f"an experiment with key {data.key!r} already exists", kind="duplicate-key")
    now = utcnow()
    experiment = Experiment(
        key=data.key,
        name=data.name,
        description=data.description,
        status="draft",
        policy=policy,
        update_interval_s=data.policy.update_interval_s,
        salt=data.salt or secrets.token_hex(8),
        coverage=data.coverage,
        primary_metric=data.primary_metric,
        reward_window_s=data.reward_window_s,
        default_reward=data.default_reward,
        reward_aggregation=data.reward_aggregation,
        analysis=_analysis_doc(data.analysis, data.primary_metric),
        rollout=_rollout_doc(data.rollout),
        variants=_variants(data.variants),
        revision=0,
        policy_version=0,
        created_at=now,
        updated_at=now,
    )
    session.add(experiment)
    session.flush()
    revise(
        session=session,
        experiment=experiment,
        action="created",
        changes=snapshot(experiment),
        actor=actor,
    )
    return experiment


def get(*, session: Session, key: str, for_update: bool = False) -> Experiment:
    query = select(Experiment).where(Experiment.key == key)
    if for_update:
        query = query.with_for_update()
    experiment = session.scalar(query)
    if experiment is None:
        raise NotFound(f"no experiment with key {key!r}")
    return experiment


def list_page(
    *, session: Session, status: str | None, limit: int, cursor: int | None
) -> tuple[list[Experiment], int | None]:
    query = select(Experiment).order_by(Experiment.id).limit(limit + 1)
    if status is not None:
        query = query.where(Experiment.status == status)
    if cursor is not None:
        query = query.where(Experiment.id > cursor)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def update(*, session: Session, key: str, data: ExperimentUpdate, actor: str) -> Experiment:
    experiment = get(session=session, key=key, for_update=True)
    requested = data.model_fields_set
    if experiment.status == "archived":
        raise Conflict(
            f"experiment {key!r} is archived and can no longer change", kind="invalid-transition"
        )
    if experiment.status != "draft":
        frozen = sorted(requested - MUTABLE_WHILE_LIVE)
        if frozen:
            raise Conflict(
                f"{', '.join(frozen)} cannot change while the experiment is {experiment.status}: "
                "it would change the meaning of data already logged (only name, description, "
                "coverage, the policy's settings and the rollout policy may change)",
                kind="frozen-field",
            )
        if data.policy is not None and data.policy.type != experiment.policy["type"]:
            raise Conflict(
                f"the policy type cannot change while the experiment is {experiment.status} "
                f"(it is {experiment.policy['type']!r})",
                kind="frozen-field",
            )
        if data.policy is not None and _reward_model(
            {**experiment.policy, **data.policy.params()}
        ) != _reward_model(experiment.policy):
            raise Conflict(
                f"the reward model cannot change while the experiment is {experiment.status}: "
                "logged rewards were defined under the current one",
                kind="frozen-field",
            )
    for name in requested:
        if getattr(data, name) is None:
            raise Invalid(f"body.{name}", "not_null", f"{name} cannot be null")
    before = snapshot(experiment)
    variants = data.variants
    if variants is not None:
        _check_variants(variants, "body")
    policy = _merged_policy(experiment, data.policy)
    policy_for(policy=policy, variants=variants if variants is not None else experiment.variants)
    default_reward = (
        data.default_reward if data.default_reward is not None else experiment.default_reward
    )
    aggregation = data.reward_aggregation or experiment.reward_aggregation
    _check_reward(policy, default_reward, aggregation, "body")

    for name in (
        "name",
        "description",
        "coverage",
        "salt",
        "primary_metric",
        "reward_window_s",
        "default_reward",
        "reward_aggregation",
    ):
        if name in requested:
            setattr(experiment, name, getattr(data, name))
    if data.analysis is not None or "primary_metric" in requested:
        plan = data.analysis or AnalysisPlan.model_validate(experiment.analysis)
        experiment.analysis = _analysis_doc(plan, experiment.primary_metric)
    if data.rollout is not None:
        experiment.rollout = _rollout_doc(data.rollout)
    if data.policy is not None:
        experiment.policy = policy
        if "update_interval_s" in data.policy.model_fields_set:
            experiment.update_interval_s = data.policy.update_interval_s
    if variants is not None:
        experiment.variants.clear()
        session.flush()  # free (experiment_id, key) before the new rows arrive
        experiment.variants.extend(_variants(variants))
    after = snapshot(experiment)
    changes = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    if changes:
        revise(
            session=session, experiment=experiment, action="updated", changes=changes, actor=actor
        )
    if experiment.status in ("running", "paused", "rolled_back") and "policy" in changes:
        # New settings (say a higher floor) apply from the next version on, at once.
        try:
            learning_service.republish(session=session, experiment=experiment, learner=actor)
        except PolicyConfigError as exc:  # the settings do not fit the statistics learned
            raise Invalid(f"body.policy.{exc.field}", "policy", exc.message) from exc
    return experiment


def _rollout_doc(spec: RolloutSpec | None) -> dict[str, Any] | None:
    """The rollout policy as stored (every field explicit), checked by the rollout core."""
    if spec is None:
        return None
    doc = spec.model_dump()
    try:
        RolloutPolicy.from_json(doc)
    except PolicyConfigError as exc:
        raise Invalid(f"body.rollout.{exc.field}", "rollout", exc.message) from exc
    return doc


def _analysis_doc(plan: AnalysisPlan, primary_metric: str) -> dict[str, Any]:
    """The plan as stored: every field explicit, so a later default change cannot alter it."""
    for family in ("guardrails", "secondary"):
        if any(m.metric == primary_metric for m in getattr(plan, family)):
            raise Invalid(
                f"body.analysis.{family}",
                "not_primary",
                f"{primary_metric!r} is the primary metric; it cannot also be in {family}",
            )
        names = [m.metric for m in getattr(plan, family)]
        if len(set(names)) != len(names):
            raise Invalid(f"body.analysis.{family}", "unique", f"{family} name a metric twice")
    overlap = {m.metric for m in plan.guardrails} & {m.metric for m in plan.secondary}
    if overlap:
        raise Invalid(
            "body.analysis.secondary",
            "unique",
            f"{sorted(overlap)} cannot be both guardrail and secondary metrics",
        )
    return plan.model_dump(mode="json")


def _merged_policy(experiment: Experiment, spec: PolicySpec | None) -> dict[str, Any]:
    """A PATCHed policy of the same type changes only the settings it names; a new type
    (possible in draft only) starts from that type's defaults."""
    if spec is None:
        return experiment.policy
    if spec.type != experiment.policy["type"]:
        return _policy_doc(spec)
    return {**experiment.policy, **spec.params()}


def _reward_model(policy: dict[str, Any]) -> str | None:
    return policy.get("reward", "bernoulli") if policy.get("type") == "thompson" else None


def transition(
    *, session: Session, key: str, action: str, actor: str, winner: str | None = None
) -> Experiment:
    allowed_from, target = TRANSITIONS[action]
    experiment = get(session=session, key=key, for_update=True)
    if experiment.status not in allowed_from:
        raise Conflict(
            f"cannot {action} an experiment that is {experiment.status} "
            f"(allowed from: {', '.join(sorted(allowed_from))})",
            kind="invalid-transition",
        )
    changes: dict[str, Any] = {"status": {"from": experiment.status, "to": target}}
    now = utcnow()
    if action == "conclude":
        keys = [v.key for v in experiment.variants]
        if winner not in keys:
            raise ProblemError(
                422,
                f"winner must be one of the variants {keys}, got {winner!r}",
                kind="validation",
                errors=[FieldError("body.winner", "variant", f"unknown variant {winner!r}")],
            )
        experiment.winner = winner
        changes["winner"] = winner
    if action == "start":
        experiment.started_at = now
        learning_service.publish_initial(session=session, experiment=experiment, learner=actor)
    if target in ("concluded", "archived") and experiment.ended_at is None:
        experiment.ended_at = now
    if action == "resume" and experiment.status == "paused":
        from app.rollouts.service import active_rollout  # rollouts build on experiments

        if active_rollout(session=session, experiment_id=experiment.id) is not None:
            target = "rolling_out"
            changes["status"]["to"] = target
    if action == "conclude":
        from app.rollouts.service import end_active

        end_active(session=session, experiment=experiment, state="cancelled", reason="concluded")
    experiment.status = target
    revise(session=session, experiment=experiment, action=action, changes=changes, actor=actor)
    return experiment


def revisions(*, session: Session, key: str) -> list[ExperimentRevision]:
    experiment = get(session=session, key=key)
    return list(
        session.scalars(
            select(ExperimentRevision)
            .where(ExperimentRevision.experiment_id == experiment.id)
            .order_by(ExperimentRevision.number)
        )
    )


def rollback_model(*, session: Session, key: str, number: int, actor: str) -> PolicyVersion:
    """Serve policy version `number`'s model again (contextual experiments); a revision."""
    experiment = get(session=session, key=key, for_update=True)
    version, changes = learning_service.rollback(
        session=session, experiment=experiment, number=number, learner=actor
    )
    revise(
        session=session,
        experiment=experiment,
        action="rolled_back",
        changes={"policy_version": {"to": version.number, "restores": number}, **changes},
        actor=actor,
    )
    return version
