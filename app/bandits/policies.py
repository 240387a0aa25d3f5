"""build_policy: the one factory the service, the simulations and the notebooks call.

A policy is configured by its type (`kind`), a JSON object of parameters, the number of arms,
and, for `fixed` only, the weights. Every mistake raises PolicyConfigError naming the field:
"type" for an unknown kind, the parameter's own name for an unknown or invalid parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.bandits.base import Policy, PolicyConfigError
from app.bandits.contextual import ContextualPolicy
from app.bandits.epsilon_greedy import EpsilonGreedyPolicy
from app.bandits.fixed import FixedPolicy, checked_weights
from app.bandits.thompson_policy import ThompsonPolicy
from app.bandits.ucb1 import UCB1Policy
from app.bandits.validation import arm_count

POLICY_KINDS: tuple[str, ...] = ("fixed", "thompson", "epsilon_greedy", "ucb1", "contextual")

# Parameters each kind accepts in `params` (n_arms and weights come separately).
PARAMETERS: Mapping[str, tuple[str, ...]] = {
    "fixed": (),
    "thompson": ("reward", "min_probability", "prior_alpha", "prior_beta"),
    "epsilon_greedy": ("epsilon",),
    "ucb1": ("min_probability", "c"),
    "contextual": (
        "exploration",
        "interactions",
        "learning_rate",
        "cb_type",
        "min_probability",
        "bits",
    ),
}

_BANDITS: Mapping[str, Callable[..., Policy]] = {
    "thompson": ThompsonPolicy,
    "epsilon_greedy": EpsilonGreedyPolicy,
    "ucb1": UCB1Policy,
}


def build_policy(
    kind: str,
    params: Mapping[str, Any],
    *,
    n_arms: int,
    weights: Sequence[float] | None = None,
    actions: Sequence[str] | None = None,
    action_features: Sequence[Mapping[str, Any] | None] | None = None,
    check_engine: bool = True,
) -> Policy:
    """A validated policy of type `kind`.

    Args:
        kind: one of POLICY_KINDS.
        params: the kind's parameters (see PARAMETERS); omitted ones take their defaults.
        n_arms: number of arms (>= 1).
        weights: `fixed` only: one weight per arm summing to 1; None means equal weights.
        actions, action_features: `contextual` only: each arm's key and own features.
        check_engine: `contextual` only: let Vowpal Wabbit itself accept the settings (a
            throwaway workspace); False for settings validated when they were stored.
    Raises:
        PolicyConfigError: with `field` "type", "n_arms", "weights", "params" or the name of
        the offending parameter.
    """
    if not isinstance(kind, str) or kind not in POLICY_KINDS:
        expected = ", ".join(repr(k) for k in POLICY_KINDS)
        raise PolicyConfigError("type", f"type must be one of {expected}, got {kind!r}")
    n_arms = arm_count("n_arms", n_arms)
    if not isinstance(params, Mapping):
        raise PolicyConfigError("params", f"params must be an object, got {params!r}")
    accepted = PARAMETERS[kind]
    for name in params:
        if name not in accepted:
            expected = ", ".join(accepted) if accepted else "none"
            raise PolicyConfigError(
                str(name),
                f"{name} is not a parameter of policy type {kind!r} (it accepts: {expected})",
            )
    if kind == "fixed":
        return _fixed(n_arms, weights)
    if weights is not None:
        raise PolicyConfigError(
            "weights",
            f"weights apply only to policy type 'fixed'; {kind!r} learns its own allocation",
        )
    if kind == "contextual":
        policy = ContextualPolicy(
            n_arms=n_arms, actions=actions, action_features=action_features, **params
        )
        if check_engine:
            policy.check_vw()
        return policy
    return _BANDITS[kind](n_arms=n_arms, **params)


def _fixed(n_arms: int, weights: Sequence[float] | None) -> FixedPolicy:
    if weights is None:
        return FixedPolicy(tuple([1.0 / n_arms] * n_arms))
    is_list = isinstance(weights, Sequence) and not isinstance(weights, str | bytes)
    if is_list and len(weights) != n_arms:
        raise PolicyConfigError(
            "weights", f"weights must have one entry per arm ({n_arms}), got {len(weights)}"
        )
    return FixedPolicy(checked_weights(weights))
