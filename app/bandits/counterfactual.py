"""Counterfactual evaluation of contextual policies on logged decisions.

Every decision Croupier logs carries its context, the served arm, that arm's exact propensity
and (once its reward window closed) its reward. That is enough to estimate what *another*
policy would have earned on the same traffic, with the statistics engine's IPS, SNIPS and DR
estimators (app.stats.ope.compare_policies):

* a candidate contextual policy (other exploration, interactions, learning rate, features) is
  trained online on the log, in decision order, and scored on each decision by the model it had
  *before* learning from it: progressive validation, the way VW's and Personalizer's offline
  evaluation work. Its estimate is the value the candidate would have earned had it been
  learning live on this traffic, warm-up included;
* the yardsticks: uniform random, and each fixed variant served to everyone;
* the logged policy's own value is the mean logged reward (on-policy, no weighting).

DR's reward model qhat(x, a) is a `--cb_adf` regression trained online on the same log and
queried before it learns each decision (RewardModel), so every estimate is out of sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from app.bandits.contextual import ContextualPolicy, RewardModel
from app.stats.ope import compare_policies

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ContextualLog:
    """Closed decisions in the order they were made."""

    contexts: Sequence[Mapping[str, Any] | None]
    arms: Sequence[int]
    propensities: Sequence[float]
    rewards: Sequence[float]

    def __post_init__(self) -> None:
        sizes = {len(self.contexts), len(self.arms), len(self.propensities), len(self.rewards)}
        if len(sizes) != 1:
            raise ValueError("contexts, arms, propensities and rewards need one entry per decision")
        if not self.arms:
            raise ValueError("the log is empty: there are no closed decisions to evaluate on")

    @property
    def n(self) -> int:
        return len(self.arms)


def progressive_probabilities(policy: ContextualPolicy, log: ContextualLog) -> FloatArray:
    """pi[i, a]: the floored pmf a fresh `policy` gives decision i before learning from it."""
    learner = policy.bind(None).learner()
    try:
        raw = [
            learner.learn_raw(context, arm, reward, propensity)
            for context, arm, propensity, reward in zip(
                log.contexts, log.arms, log.propensities, log.rewards, strict=True
            )
        ]
    finally:
        learner.close()
    return policy.floored_rows(raw)


def reward_model(reference: ContextualPolicy, log: ContextualLog) -> FloatArray:
    """qhat[i, a], each row predicted before its decision was learned (see RewardModel)."""
    model = RewardModel(reference)
    result = np.empty((log.n, reference.n_arms))
    try:
        for i, (context, arm, propensity, reward) in enumerate(
            zip(log.contexts, log.arms, log.propensities, log.rewards, strict=True)
        ):
            result[i] = model.predict_then_learn(context, arm, reward, propensity)
    finally:
        model.close()
    return result


def evaluate(
    log: ContextualLog,
    candidates: Mapping[str, ContextualPolicy],
    *,
    reference: ContextualPolicy,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """IPS, SNIPS and DR estimates of each candidate and yardstick; see the module docstring.

    Args:
        log: the closed decisions.
        candidates: name -> contextual policy to train progressively on the log.
        reference: gives the actions (keys, features) and the reward model's interactions.
    Returns:
        compare_policies' table (candidate, estimator, estimate, std_error, ci_low, ci_high,
        effective_sample_size, note) with a first row `logged` / `on-policy`.
    """
    n_arms = reference.n_arms
    targets: dict[str, FloatArray] = {"uniform": np.full(n_arms, 1.0 / n_arms)}
    for arm, key in enumerate(reference.actions or ()):
        targets[f"variant:{key}"] = np.eye(n_arms)[arm]
    for name, policy in candidates.items():
        if policy.n_arms != n_arms:
            raise ValueError(f"candidate {name!r} has {policy.n_arms} actions, the log {n_arms}")
        targets[name] = progressive_probabilities(policy, log)
    rewards = np.asarray(log.rewards, dtype=np.float64)
    table = compare_policies(
        reward=rewards,
        propensity=np.asarray(log.propensities, dtype=np.float64),
        arm=np.asarray(log.arms, dtype=np.int64),
        reward_model=reward_model(reference, log),
        targets=targets,
        alpha=alpha,
    )
    return pd.concat([_on_policy(rewards, alpha), table], ignore_index=True)


def _on_policy(rewards: FloatArray, alpha: float) -> pd.DataFrame:
    n = rewards.size
    mean = float(rewards.mean())
    se = float(rewards.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    z = float(stats.norm.ppf(1 - alpha / 2))
    return pd.DataFrame(
        [
            {
                "candidate": "logged",
                "estimator": "on-policy",
                "estimate": mean,
                "std_error": se,
                "ci_low": mean - z * se,
                "ci_high": mean + z * se,
                "effective_sample_size": float(n),
                "note": "",
            }
        ]
    )
