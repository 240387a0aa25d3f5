"""`thompson`: serve each arm with its posterior probability of being best, floored.

Allocation = apply_floor(P(best | posterior), min_probability); P(best) is integrated by
app.bandits.thompson, so the logged propensity is the exact serving probability (no Monte-Carlo
noise). Deciders draw from it with the generator of (salt, decision_id).

Reward models (posteriors of each arm's mean reward, arms independent):

* bernoulli - rewards in [0, 1]. Beta(prior_alpha + total, prior_beta + count - total), the
  conjugate Beta-Bernoulli posterior (Chapelle & Li 2011). A fractional reward is added as a
  fractional success; Agrawal & Goyal (2012, Algorithm 2) instead draw a Bernoulli trial for
  it, which would make the allocation random rather than a function of the statistics.
* gaussian - any real rewards. Normal(ybar_i, s_i^2 / n_i): the flat-prior posterior of a
  normal mean with the sample variance s_i^2 (n - 1 denominator) plugged in for sigma^2.
  - An arm whose rewards are all equal (s_i^2 = 0) borrows the pooled within-arm variance
    sum (n_j - 1) s_j^2 / sum (n_j - 1), so two identical rewards do not make it certain.
  - Posterior sds are floored at 1e-9 x the largest |mean| or sd of any arm, so a posterior
    that is still a point mass (every reward of every arm constant) stays well defined.
  - Warm-up: an arm with fewer than 2 observations has no variance estimate and is treated
    as maximally uncertain: while any arm is in that state, the whole non-floor share is
    split equally among such arms (every other arm keeps its floor), as UCB1 plays untried
    arms first. With batch learning this lasts one learner cycle in practice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from app.bandits.allocation import apply_floor, sampled_choice
from app.bandits.base import ArmStats, Choice, JSONValue, PolicyConfigError, PolicyState
from app.bandits.validation import (
    arm_count,
    finite_number,
    floor_fits,
    json_floats,
    one_of,
    positive_number,
    stats_arrays,
)
from app.stats.p_best import p_best_beta, p_best_normal

FloatArray = npt.NDArray[np.float64]

REWARD_MODELS = ("bernoulli", "gaussian")
MIN_WARM_COUNT = 2
"""A gaussian arm needs 2 observations for a sample variance."""
SD_FLOOR = 1e-9
"""Relative floor on gaussian posterior sds (see module docstring)."""
_ROUNDING = 1e-9  # tolerance, per observation, of sums of rewards accumulated in SQL


@dataclass(frozen=True, slots=True)
class ThompsonPolicy:
    """Thompson sampling by exact P(best), with an exploration floor.

    Args:
        n_arms: number of arms (>= 1).
        reward: "bernoulli" (rewards in [0, 1]) or "gaussian" (any real rewards).
        min_probability: floor on every arm's probability, > 0, with n_arms * it <= 1.
        prior_alpha, prior_beta: Beta prior for "bernoulli" (> 0; 1, 1 is uniform).
    """

    kind: ClassVar[str] = "thompson"
    n_arms: int
    reward: str = "bernoulli"
    min_probability: float = 0.01
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_arms", arm_count("n_arms", self.n_arms))
        one_of("reward", self.reward, REWARD_MODELS)
        floor = finite_number("min_probability", self.min_probability)
        floor_fits(floor, self.n_arms)
        object.__setattr__(self, "min_probability", floor)
        for name in ("prior_alpha", "prior_beta"):
            value = positive_number(name, getattr(self, name))
            if self.reward == "gaussian" and value != 1.0:
                raise PolicyConfigError(
                    name, f"{name} applies only to reward 'bernoulli' (gaussian uses a flat prior)"
                )
            object.__setattr__(self, name, value)

    def initial_state(self) -> PolicyState:
        return self.update([ArmStats()] * self.n_arms)

    def update(self, stats: Sequence[ArmStats]) -> PolicyState:
        """The allocation from cumulative per-arm statistics.

        Raises PolicyConfigError("reward", ...) when reward "bernoulli" meets statistics that no
        set of rewards in [0, 1] could produce.
        """
        counts, totals, sum_squares = stats_arrays(stats, self.n_arms)
        if self.reward == "bernoulli":
            p_best, details = self._bernoulli(counts, totals, sum_squares)
        else:
            p_best, details = self._gaussian(counts, totals, sum_squares)
        probabilities = apply_floor(p_best, self.min_probability)
        details |= {"p_best": p_best.tolist(), "min_probability": self.min_probability}
        return PolicyState(tuple(probabilities.tolist()), details)

    def choose(
        self,
        state: PolicyState,
        *,
        salt: str,
        unit_id: str,
        decision_id: str,
        context: Mapping[str, JSONValue] | None = None,
    ) -> Choice:
        return sampled_choice(
            state.probabilities, n_arms=self.n_arms, salt=salt, decision_id=decision_id
        )

    def _bernoulli(
        self, counts: FloatArray, totals: FloatArray, sum_squares: FloatArray
    ) -> tuple[FloatArray, dict[str, JSONValue]]:
        check_unit_interval_rewards(counts, totals, sum_squares)
        failures = np.maximum(counts - totals, 0.0)
        alpha = self.prior_alpha + np.maximum(totals, 0.0)
        beta = self.prior_beta + failures
        details: dict[str, JSONValue] = {
            "reward": "bernoulli",
            "alpha": alpha.tolist(),
            "beta": beta.tolist(),
        }
        return p_best_beta(alpha, beta), details

    def _gaussian(
        self, counts: FloatArray, totals: FloatArray, sum_squares: FloatArray
    ) -> tuple[FloatArray, dict[str, JSONValue]]:
        warm = counts >= MIN_WARM_COUNT
        means = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
        sds = posterior_sds(counts, totals, sum_squares)
        details: dict[str, JSONValue] = {
            "reward": "gaussian",
            "count": [int(c) for c in counts.tolist()],
            "mean": json_floats(means, counts > 0),
            "sd": json_floats(sds, warm),
            "warm_up": bool(not warm.all()),
        }
        if not warm.all():
            cold = (~warm).astype(np.float64)
            return cold / cold.sum(), details
        return p_best_normal(means, sds), details


def check_unit_interval_rewards(
    counts: FloatArray, totals: FloatArray, sum_squares: FloatArray
) -> None:
    """Rewards y in [0, 1] give 0 <= total <= count and total^2 / count <= sum y^2 <= total.

    (y^2 <= y exactly when 0 <= y <= 1; the lower bound is Cauchy-Schwarz.) Sums built in SQL
    carry rounding, hence the tolerance of 1e-9 per observation.
    """
    for arm, (n, total, squares) in enumerate(zip(counts, totals, sum_squares, strict=True)):
        tolerance = _ROUNDING * max(1.0, float(n))
        if total < -tolerance or total > n + tolerance:
            problem = f"arm {arm} has total reward {total:g} over {n:g} observations"
        elif squares > total + tolerance or (n > 0 and squares < total * total / n - tolerance):
            problem = (
                f"arm {arm} has sum of squared rewards {squares:g} for total {total:g} "
                f"over {n:g} observations"
            )
        else:
            continue
        raise PolicyConfigError(
            "reward",
            f"reward 'bernoulli' needs every reward in [0, 1], but {problem}; "
            "use reward 'gaussian' for other rewards",
        )


def posterior_sds(counts: FloatArray, totals: FloatArray, sum_squares: FloatArray) -> FloatArray:
    """sd of each arm's Normal posterior of the mean: sqrt(s^2 / n), see the module docstring.

    Entries for arms with fewer than 2 observations are 0 (they are in warm-up).
    """
    warm = counts >= MIN_WARM_COUNT
    n = np.where(warm, counts, 2.0)
    centred = sum_squares - np.divide(totals * totals, n)
    # sum y^2 - (sum y)^2 / n cancels catastrophically when the spread is tiny next to the
    # mean: anything within rounding of sum y^2 is treated as exactly zero variance.
    noise = 8.0 * np.finfo(np.float64).eps * np.abs(sum_squares)
    variances = np.where(warm & (centred > noise), centred / (n - 1.0), 0.0)
    degrees = np.where(warm, n - 1.0, 0.0)
    pooled = float(np.dot(degrees, variances) / degrees.sum()) if degrees.sum() > 0 else 0.0
    variances = np.where(variances > 0.0, variances, pooled)
    sds: FloatArray = np.where(warm, np.sqrt(variances / n), 0.0)
    means = np.where(warm, totals / n, 0.0)
    scale = float(np.max(np.maximum(np.abs(means), sds))) if warm.any() else 0.0
    # All-zero rewards everywhere: any positive sd gives identical posteriors, an equal split.
    floor = SD_FLOOR * scale if scale > 0.0 else 1.0
    result: FloatArray = np.where(warm, np.maximum(sds, floor), 0.0)
    return result
