"""From an experiment's stored settings to the bandit core's policy object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.bandits import PolicyConfigError, build_policy
from app.bandits.base import Policy
from app.errors import Invalid
from app.experiments.models import Experiment


def policy_for(
    *, policy: dict[str, Any], weights: Sequence[float | None], field_prefix: str = "body"
) -> Policy:
    """Build the bandit-core policy an experiment's settings describe; 422 naming the field."""
    params = {k: v for k, v in policy.items() if k not in ("type", "update_interval_s")}
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
    try:
        return build_policy(policy["type"], params, n_arms=len(weights), weights=given or None)
    except PolicyConfigError as exc:
        field = (
            f"{field_prefix}.variants[*].weight"
            if exc.field == "weights"
            else f"{field_prefix}.policy.{exc.field}"
        )
        raise Invalid(field, "policy", exc.message) from exc


def build(experiment: Experiment) -> Policy:
    """The policy a stored (already validated) experiment describes."""
    return policy_for(policy=experiment.policy, weights=[v.weight for v in experiment.variants])
