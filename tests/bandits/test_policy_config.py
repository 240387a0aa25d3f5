"""Bad policy configurations: each is rejected naming the field, with a message to act on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from app.bandits import (
    POLICY_KINDS,
    EpsilonGreedyPolicy,
    FixedPolicy,
    PolicyConfigError,
    ThompsonPolicy,
    UCB1Policy,
    build_policy,
)

NAN = float("nan")

# (kind, params, n_arms, weights) -> (field, message)
BAD_CONFIGS: list[tuple[Any, Any, Any, Sequence[Any] | None, str, str]] = [
    ("fixed", {}, 0, None, "n_arms", "at least one arm is required, got 0"),
    ("thompson", {}, 0, None, "n_arms", "at least one arm is required, got 0"),
    ("ucb1", {}, True, None, "n_arms", "n_arms must be a whole number, got True"),
    ("ucb1", {}, 2.0, None, "n_arms", "n_arms must be a whole number, got 2.0"),
    ("fixed", {}, 3, [0.3, 0.3, 0.3], "weights", "weights must sum to 1, got 0.9"),
    ("fixed", {}, 2, [0.7, 0.7], "weights", "weights must sum to 1, got 1.4"),
    ("fixed", {}, 3, [0.5, -0.1, 0.6], "weights", "weights must all be > 0, got -0.1 for arm 1"),
    ("fixed", {}, 2, [1.0, 0.0], "weights", "weights must all be > 0, got 0 for arm 1"),
    ("fixed", {}, 2, [NAN, 0.5], "weights", "weights must be a finite number, got nan"),
    ("fixed", {}, 2, [math.inf, 0.5], "weights", "weights must be a finite number, got inf"),
    ("fixed", {}, 2, ["0.5", 0.5], "weights", "weights must be a number, got '0.5'"),
    ("fixed", {}, 2, [True, False], "weights", "weights must be a number, got True"),
    ("fixed", {}, 3, [0.5, 0.5], "weights", "weights must have one entry per arm (3), got 2"),
    ("fixed", {}, 3, [0.3, 0.3], "weights", "weights must have one entry per arm (3), got 2"),
    ("fixed", {}, 1, "1", "weights", "weights must be a list of numbers, got '1'"),
    (
        "thompson",
        {"min_probability": 0.6},
        3,
        None,
        "min_probability",
        "min_probability * number of arms must be <= 1, got 0.6 * 3 = 1.8",
    ),
    (
        "ucb1",
        {"min_probability": 0.0},
        3,
        None,
        "min_probability",
        "min_probability must be > 0 so that every arm keeps being explored, got 0",
    ),
    (
        "thompson",
        {"min_probability": NAN},
        3,
        None,
        "min_probability",
        "min_probability must be a finite number, got nan",
    ),
    (
        "thompson",
        {"min_probability": "0.1"},
        3,
        None,
        "min_probability",
        "min_probability must be a number, got '0.1'",
    ),
    (
        "bogus",
        {},
        3,
        None,
        "type",
        "type must be one of 'fixed', 'thompson', 'epsilon_greedy', 'ucb1', 'contextual', "
        "got 'bogus'",
    ),
    (
        "thompson",
        {"epsilon": 0.1},
        3,
        None,
        "epsilon",
        "epsilon is not a parameter of policy type 'thompson' "
        "(it accepts: reward, min_probability, prior_alpha, prior_beta)",
    ),
    (
        "fixed",
        {"min_probability": 0.1},
        3,
        None,
        "min_probability",
        "min_probability is not a parameter of policy type 'fixed' (it accepts: none)",
    ),
    ("epsilon_greedy", {"epsilon": 0}, 3, None, "epsilon", "epsilon must be in (0, 1], got 0"),
    ("epsilon_greedy", {"epsilon": 1.5}, 3, None, "epsilon", "epsilon must be in (0, 1], got 1.5"),
    (
        "epsilon_greedy",
        {"epsilon": True},
        3,
        None,
        "epsilon",
        "epsilon must be a number, got True",
    ),
    (
        "thompson",
        {"reward": "poisson"},
        3,
        None,
        "reward",
        "reward must be one of 'bernoulli', 'gaussian', got 'poisson'",
    ),
    ("thompson", {"prior_alpha": 0}, 3, None, "prior_alpha", "prior_alpha must be > 0, got 0"),
    (
        "thompson",
        {"reward": "gaussian", "prior_beta": 2.0},
        3,
        None,
        "prior_beta",
        "prior_beta applies only to reward 'bernoulli' (gaussian uses a flat prior)",
    ),
    ("ucb1", {"c": -1}, 3, None, "c", "c must be >= 0, got -1"),
    ("ucb1", {"c": math.inf}, 3, None, "c", "c must be a finite number, got inf"),
    (
        "thompson",
        {},
        2,
        [0.5, 0.5],
        "weights",
        "weights apply only to policy type 'fixed'; 'thompson' learns its own allocation",
    ),
    ("ucb1", [("c", 1.0)], 2, None, "params", "params must be an object, got [('c', 1.0)]"),
]


@pytest.mark.parametrize(
    ("kind", "params", "n_arms", "weights", "field", "message"),
    BAD_CONFIGS,
    ids=[f"{row[0]}-{row[4]}-{i}" for i, row in enumerate(BAD_CONFIGS)],
)
def test_bad_config_is_rejected_naming_the_field(
    kind: str,
    params: Mapping[str, Any],
    n_arms: int,
    weights: Sequence[float] | None,
    field: str,
    message: str,
) -> None:
    with pytest.raises(PolicyConfigError) as error:
        build_policy(kind, params, n_arms=n_arms, weights=weights)
    assert (error.value.field, error.value.message) == (field, message)
    assert str(error.value) == f"{field}: {message}"


def test_empty_fixed_weights_are_rejected() -> None:
    with pytest.raises(PolicyConfigError) as error:
        FixedPolicy(())
    assert (error.value.field, error.value.message) == (
        "weights",
        "at least one arm is required, got 0 weights",
    )


def test_policies_built_directly_are_validated_too() -> None:
    with pytest.raises(PolicyConfigError, match="epsilon must be in"):
        EpsilonGreedyPolicy(2, epsilon=0.0)
    with pytest.raises(PolicyConfigError, match="min_probability \\* number of arms"):
        UCB1Policy(20, min_probability=0.1)
    with pytest.raises(PolicyConfigError, match="reward must be one of"):
        ThompsonPolicy(2, reward="normal")


def test_hand_typed_weights_within_1e6_are_accepted_and_rescaled() -> None:
    policy = build_policy("fixed", {}, n_arms=3, weights=[0.3333333, 0.3333333, 0.3333333])
    assert isinstance(policy, FixedPolicy)
    assert math.fsum(policy.weights) == pytest.approx(1.0, abs=1e-15)
    assert policy.weights[0] == pytest.approx(1 / 3, abs=1e-15)


def test_integer_parameters_are_accepted_as_numbers() -> None:
    policy = build_policy("ucb1", {"c": 2, "min_probability": 0.05}, n_arms=4)
    assert policy == UCB1Policy(4, min_probability=0.05, c=2.0)
    assert isinstance(UCB1Policy(4, c=2).c, float)


def test_every_policy_kind_can_be_built_with_defaults() -> None:
    assert [build_policy(kind, {}, n_arms=2).kind for kind in POLICY_KINDS] == list(POLICY_KINDS)
