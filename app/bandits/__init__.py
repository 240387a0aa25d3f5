"""The decision core: sticky hashing, allocations, and the policies that produce them.

Pure (stdlib, numpy, scipy): the service, the simulations and the notebooks run this code.
See docs/decision-core.md for the hashing specification and each policy's allocation rule.
"""

from app.bandits.allocation import (
    apply_floor,
    arm_for_bucket,
    arms_for_uniforms,
    inverse_cdf_arms,
    sample_arm,
    sampled_choice,
    validate_probabilities,
)
from app.bandits.base import (
    ArmStats,
    Choice,
    JSONValue,
    Policy,
    PolicyConfigError,
    PolicyState,
)
from app.bandits.contextual import ContextualLearner, ContextualPolicy
from app.bandits.epsilon_greedy import EpsilonGreedyPolicy
from app.bandits.fixed import FixedPolicy
from app.bandits.hashing import bucket, coverage_bucket, decision_uniform, in_coverage, rng_for
from app.bandits.policies import PARAMETERS, POLICY_KINDS, build_policy
from app.bandits.thompson_policy import ThompsonPolicy
from app.bandits.ucb1 import UCB1Policy
from app.stats.p_best import p_best_beta, p_best_normal

__all__ = [
    "PARAMETERS",
    "POLICY_KINDS",
    "ArmStats",
    "Choice",
    "ContextualLearner",
    "ContextualPolicy",
    "EpsilonGreedyPolicy",
    "FixedPolicy",
    "JSONValue",
    "Policy",
    "PolicyConfigError",
    "PolicyState",
    "ThompsonPolicy",
    "UCB1Policy",
    "apply_floor",
    "arm_for_bucket",
    "arms_for_uniforms",
    "bucket",
    "build_policy",
    "coverage_bucket",
    "decision_uniform",
    "in_coverage",
    "inverse_cdf_arms",
    "p_best_beta",
    "p_best_normal",
    "rng_for",
    "sample_arm",
    "sampled_choice",
    "validate_probabilities",
]
