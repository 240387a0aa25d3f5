"""Counterfactual evaluation recovers known policy values on synthetic logs.

The environment's mean rewards mu[segment, action] are known, so every target's true value on
the logged contexts is known too: a fixed variant's is the mean of mu[s_i, k]; a candidate
trained progressively on the log has pmf pi_i before decision i, and its value on this traffic
is mean_i sum_a pi_i(a) mu[s_i, a] (IPS and DR are unbiased for it round by round: pi_i depends
only on earlier decisions). The logging policy is not uniform, so the weights matter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.bandits import ContextualPolicy
from app.bandits.counterfactual import ContextualLog, evaluate, progressive_probabilities

MU = np.array([[0.6, 0.2, 0.3], [0.1, 0.5, 0.2], [0.2, 0.3, 0.7]])
LOGGING = np.array([0.6, 0.25, 0.15])  # favours action 0 everywhere
ACTIONS = ["a", "b", "c"]


def synthetic_log(seed: int, n: int) -> tuple[ContextualLog, np.ndarray]:
    rng = np.random.default_rng(seed)
    segments = rng.integers(0, 3, n)
    arms = rng.choice(3, size=n, p=LOGGING)
    rewards = (rng.random(n) < MU[segments, arms]).astype(float)
    log = ContextualLog(
        contexts=[{"segment": "xyz"[s], "noise": float(rng.random())} for s in segments],
        arms=arms.tolist(),
        propensities=LOGGING[arms].tolist(),
        rewards=rewards.tolist(),
    )
    return log, segments


def policy(**settings: object) -> ContextualPolicy:
    return ContextualPolicy(n_arms=3, actions=ACTIONS, **settings)  # type: ignore[arg-type]


def row(table: pd.DataFrame, candidate: str, estimator: str) -> pd.Series:
    found = table[(table.candidate == candidate) & (table.estimator == estimator)]
    assert len(found) == 1
    return found.iloc[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_estimates_cover_the_known_values(seed: int) -> None:
    log, segments = synthetic_log(seed, 3000)
    candidate = policy(exploration={"algorithm": "epsilon", "epsilon": 0.1})
    table = evaluate(log, {"learner": candidate}, reference=policy(), alpha=0.01)
    truths = {f"variant:{k}": MU[segments, a].mean() for a, k in enumerate(ACTIONS)}
    truths["uniform"] = MU[segments].mean()
    pi = progressive_probabilities(candidate, log)
    truths["learner"] = float((pi * MU[segments]).sum(axis=1).mean())
    for name, truth in truths.items():
        for estimator in ("ips", "snips", "dr"):
            estimate = row(table, name, estimator)
            assert estimate.ci_low <= truth <= estimate.ci_high, (name, estimator, truth)
    # The learner finds each segment's best action, so it beats every fixed variant.
    best_fixed = max(truths[f"variant:{k}"] for k in ACTIONS)
    assert truths["learner"] > best_fixed + 0.1
    assert row(table, "learner", "dr").estimate > best_fixed
    logged = row(table, "logged", "on-policy")
    assert logged.ci_low <= float((LOGGING * MU[segments]).sum(axis=1).mean()) <= logged.ci_high


def test_doubly_robust_is_tighter_than_ips_with_a_useful_reward_model() -> None:
    log, _ = synthetic_log(5, 3000)
    table = evaluate(log, {}, reference=policy(), alpha=0.05)
    for name in ("variant:b", "variant:c", "uniform"):
        assert row(table, name, "dr").std_error < row(table, name, "ips").std_error, name


def test_progressive_scores_come_before_learning_and_are_reproducible() -> None:
    log, _ = synthetic_log(9, 200)
    candidate = policy()
    first = progressive_probabilities(candidate, log)
    assert np.allclose(first[0], 1 / 3)  # the first decision is scored by an untrained model
    assert np.array_equal(first, progressive_probabilities(candidate, log))
    assert np.all(first >= candidate.min_probability - 1e-12)
    assert np.allclose(first.sum(axis=1), 1.0)


def test_a_log_without_decisions_or_with_mismatched_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        ContextualLog(contexts=[], arms=[], propensities=[], rewards=[])
    with pytest.raises(ValueError, match="one entry per decision"):
        ContextualLog(contexts=[None], arms=[0, 1], propensities=[0.5], rewards=[1.0])
    log, _ = synthetic_log(1, 50)
    with pytest.raises(ValueError, match="actions"):
        evaluate(log, {"two": ContextualPolicy(n_arms=2)}, reference=policy())
