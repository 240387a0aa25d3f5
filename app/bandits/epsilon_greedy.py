"""`epsilon_greedy`: explore uniformly with probability epsilon, else serve the best mean.

Allocation (Sutton & Barto 2018, sec. 2.2, written as a probability vector):

    p_i = epsilon / K + (1 - epsilon) * [i in B] / |B|

where B is the set of arms tied for the highest observed mean reward (within 1e-12, relative,
so that rounding in SQL sums cannot break a tie) together with every arm never observed yet:
an untried arm counts as tied-best, so it gets tried. Deciders draw from p with the
generator of (salt, decision_id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from app.bandits.allocation import sampled_choice, tied_for_top
from app.bandits.base import ArmStats, Choice, JSONValue, PolicyConfigError, PolicyState
from app.bandits.validation import arm_count, finite_number, json_floats, stats_arrays


@dataclass(frozen=True, slots=True)
class EpsilonGreedyPolicy:
    """Epsilon-greedy on observed mean rewards.

    Args:
        n_arms: number of arms (>= 1).
        epsilon: share spread uniformly over all arms, in (0, 1]; every arm gets >= epsilon / K.
        allow_greedy: accept epsilon = 0, the pure greedy policy that never explores. Only
            the simulations' feedback-loop study sets it, to show what goes wrong without
            exploration; `build_policy` (the service's factory) cannot, so nothing served is
            ever greedy.
    """

    kind: ClassVar[str] = "epsilon_greedy"
    n_arms: int
    epsilon: float = 0.1
    allow_greedy: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_arms", arm_count("n_arms", self.n_arms))
        epsilon = finite_number("epsilon", self.epsilon)
        if self.allow_greedy and epsilon == 0.0:
            pass
        elif not 0.0 < epsilon <= 1.0:
            # epsilon = 0 would never explore: propensities of 0 and a policy stuck on its
            # first leader.
            raise PolicyConfigError("epsilon", f"epsilon must be in (0, 1], got {epsilon:g}")
        object.__setattr__(self, "epsilon", epsilon)

    def initial_state(self) -> PolicyState:
        return self.update([ArmStats()] * self.n_arms)

    def update(self, stats: Sequence[ArmStats]) -> PolicyState:
        counts, totals, _ = stats_arrays(stats, self.n_arms)
        observed = counts > 0
        means = np.divide(totals, counts, out=np.zeros_like(totals), where=observed)
        best = (tied_for_top(means, observed) | ~observed).astype(np.float64)
        probabilities = self.epsilon / self.n_arms + (1.0 - self.epsilon) * best / best.sum()
        details: dict[str, JSONValue] = {
            "count": [int(c) for c in counts.tolist()],
            "mean": json_floats(means, observed),
            "best_arms": np.flatnonzero(best).tolist(),
            "epsilon": self.epsilon,
        }
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
