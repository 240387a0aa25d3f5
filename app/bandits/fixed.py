"""`fixed`: a weighted A/B/n split, sticky per unit.

The unit's arm bucket u = bucket(salt, unit_id) in [0, 1) picks the arm whose cumulative
weight range holds it, so a unit sees the same arm in every process and after every restart,
and the decision_id plays no part. The policy never learns: update() returns the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from app.bandits.allocation import arm_for_bucket, normalise, validate_probabilities
from app.bandits.base import ArmStats, Choice, JSONValue, PolicyConfigError, PolicyState
from app.bandits.hashing import bucket
from app.bandits.validation import finite_number, stats_arrays

WEIGHT_SUM_TOLERANCE = 1e-6
"""Weights typed by hand (0.333, 0.333, 0.334) are accepted and rescaled to sum to 1."""


@dataclass(frozen=True, slots=True)
class FixedPolicy:
    """Weighted split: arm i is served to the units whose bucket falls in its weight range.

    Args:
        weights: one weight per arm, each > 0, summing to 1 within 1e-6 (they are rescaled
            to sum to 1 exactly, so propensities are exact probabilities).
    """

    kind: ClassVar[str] = "fixed"
    weights: tuple[float, ...]
    n_arms: int = field(init=False)

    def __post_init__(self) -> None:
        weights = checked_weights(self.weights)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "n_arms", len(weights))

    def initial_state(self) -> PolicyState:
        return PolicyState(self.weights, {"weights": list(self.weights)})

    def update(self, stats: Sequence[ArmStats]) -> PolicyState:
        stats_arrays(stats, self.n_arms)  # the length is still checked: a fixed split never learns
        return self.initial_state()

    def choose(
        self,
        state: PolicyState,
        *,
        salt: str,
        unit_id: str,
        decision_id: str,
        context: Mapping[str, JSONValue] | None = None,
    ) -> Choice:
        validate_probabilities(state.probabilities, n_arms=self.n_arms, name="state probabilities")
        arm = arm_for_bucket(bucket(salt, unit_id), state.probabilities)
        return Choice(
            arm=arm, propensity=state.probabilities[arm], probabilities=state.probabilities
        )


def checked_weights(weights: object) -> tuple[float, ...]:
    """Validated weights rescaled to sum to 1; PolicyConfigError("weights", ...) otherwise."""
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence):
        raise PolicyConfigError("weights", f"weights must be a list of numbers, got {weights!r}")
    if not weights:
        raise PolicyConfigError("weights", "at least one arm is required, got 0 weights")
    values = [finite_number("weights", w) for w in weights]
    for arm, w in enumerate(values):
        if w <= 0.0:
            # A zero weight would leave an arm that is never served and has propensity 0.
            raise PolicyConfigError("weights", f"weights must all be > 0, got {w:g} for arm {arm}")
    total = math.fsum(values)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise PolicyConfigError("weights", f"weights must sum to 1, got {total:.10g}")
    if total == 1.0:
        return tuple(values)  # already exact: keep the user's numbers bit for bit
    return tuple(normalise(values).tolist())
