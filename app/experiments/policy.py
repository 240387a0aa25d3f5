"""From an experiment's stored settings to the bandit core's policy object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from app.bandits import PolicyConfigError, build_policy
from app.bandits.base import Policy
from app.errors import Invalid
from app.experiments.models import Experiment


class VariantLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def weight(self) -> float | None: ...
    @property
    def payload(self) -> Any: ...


def action_features(payload: Any) -> Mapping[str, Any] | None:
    """A variant's own features for contextual policies: its payload's `features` object."""
    if isinstance(payload, Mapping) and isinstance(payload.get("features"), Mapping):
        features: Mapping[str, Any] = payload["features"]
        return features
    return None


def policy_for(
    *,
    policy: dict[str, Any],
    variants: Sequence[VariantLike],
    field_prefix: str = "body",
    stored: bool = False,
) -> Policy:
    """Build the bandit-core policy an experiment's settings describe; 422 naming the field."""
    params = {k: v for k, v in policy.items() if k not in ("type", "update_interval_s")}
    weights = [v.weight for v in variants]
    given = [w for w in weights if w is not None]
    if given and len(given) != len(weights):
        raise Invalid(
            f"{field_prefix}.variants",
            "weights_all_or_none",
            "give a weight to every variant or to none",
        )
    if given and policy["type"] != "fixed":
        raise Invalid(
            f"{field_prefix}.variants",
            "weights_fixed_only",
            f"variant weights apply to policy 'fixed' only; {policy['type']!r} learns its "
            "allocation",
        )
    contextual = policy["type"] == "contextual"
    try:
        return build_policy(
            policy["type"],
            params,
            n_arms=len(weights),
            weights=given or None,
            actions=[v.key for v in variants] if contextual else None,
            action_features=[action_features(v.payload) for v in variants] if contextual else None,
            check_engine=not stored,
        )
    except PolicyConfigError as exc:
        if exc.field == "weights":
            field = f"{field_prefix}.variants[*].weight"
        elif exc.field == "action_features":
            field = f"{field_prefix}.variants[*].payload.features"
        else:
            field = f"{field_prefix}.policy.{exc.field}"
        raise Invalid(field, "policy", exc.message) from exc


def build(experiment: Experiment) -> Policy:
    """The policy a stored (already validated) experiment describes. Called on every policy
    reload and learner pass, so VW is not asked to re-accept the settings each time."""
    return policy_for(policy=experiment.policy, variants=experiment.variants, stored=True)
