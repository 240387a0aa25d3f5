"""`ucb1`: the arm with the highest upper confidence bound gets everything above the floor.

Index (Auer, Cesa-Bianchi & Fischer 2002, "Finite-time Analysis of the Multiarmed Bandit
Problem", UCB1, with c = sqrt(2) as in the paper):

    index_i = mean_i + c * sqrt(ln N / n_i),   N = sum_i n_i

Arms never observed come first (their index is +infinity). The allocation gives every arm
min_probability and splits the rest, 1 - K * min_probability, equally among the arms tied
for the top index (within 1e-12, relative): deterministic in the ranking, randomised only by
the floor, which keeps propensities positive for off-policy evaluation. Deciders draw from it
with the generator of (salt, decision_id). UCB1's guarantee assumes rewards in [0, 1]; for
other scales, scale c with the reward range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from app.bandits.allocation import apply_floor, sampled_choice, tied_for_top
from app.bandits.base import ArmStats, Choice, JSONValue, PolicyConfigError, PolicyState
from app.bandits.validation import arm_count, finite_number, floor_fits, json_floats, stats_arrays


@dataclass(frozen=True, slots=True)
class UCB1Policy:
    """UCB1 with an exploration floor.

    Args:
        n_arms: number of arms (>= 1).
        min_probability: floor on every arm's probability, > 0, with n_arms * it <= 1.
        c: exploration constant, >= 0 (sqrt(2) in Auer et al.; 0 is greedy plus the floor).
    """

    kind: ClassVar[str] = "ucb1"
    n_arms: int
    min_probability: float = 0.01
    c: float = math.sqrt(2.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_arms", arm_count("n_arms", self.n_arms))
        floor = finite_number("min_probability", self.min_probability)
        floor_fits(floor, self.n_arms)
        object.__setattr__(self, "min_probability", floor)
        c = finite_number("c", self.c)
        if c < 0.0:
            raise PolicyConfigError("c", f"c must be >= 0, got {c:g}")
        object.__setattr__(self, "c", c)

    def initial_state(self) -> PolicyState:
        return self.update([ArmStats()] * self.n_arms)

    def update(self, stats: Sequence[ArmStats]) -> PolicyState:
        counts, totals, _ = stats_arrays(stats, self.n_arms)
        tried = counts > 0
        n = np.where(tried, counts, 1.0)
        means = np.where(tried, totals / n, 0.0)
        log_total = math.log(counts.sum()) if tried.any() else 0.0
        indices = means + self.c * np.sqrt(log_total / n)
        top = (~tried if not tried.all() else tied_for_top(indices, tried)).astype(np.float64)
        probabilities = apply_floor(top / top.sum(), self.min_probability)
        details: dict[str, JSONValue] = {
            "count": [int(x) for x in counts.tolist()],
            "mean": json_floats(means, tried),
            "index": json_floats(indices, tried),
            "top_arms": np.flatnonzero(top).tolist(),
            "c": self.c,
            "min_probability": self.min_probability,
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
