"""Simulated worlds: what each arm pays, per round, and the ground truth to score policies by.

An environment answers two questions for a block of rounds [start, start + n):

* `contexts(rng, start, n)`: the segment of each round (all 0 without context);
* `means(rounds, segments)`: the expected reward of every arm in every one of those rounds,
  an (n, K) array; this is the ground truth regret is measured against.

Rewards are drawn from the means by `draw(means, noise)`, with `noise` one common random number
per round (a uniform for Bernoulli arms, a standard normal for Gaussian ones). Every policy of a
scenario meets the same per-round noise in the same replicate (common random numbers), so the
differences between policies are not drowned by differences in luck.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.bandits import inverse_cdf_arms

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
RewardKind = Literal["bernoulli", "gaussian"]


class ScenarioError(ValueError):
    """An invalid scenario setting; `field` names it (dotted: "environment.means")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Environment(ABC):
    """Arms with a reward distribution (Bernoulli or Gaussian with a common sd)."""

    reward: RewardKind = field(default="bernoulli", kw_only=True)
    sd: float = field(default=1.0, kw_only=True)

    @property
    @abstractmethod
    def n_arms(self) -> int: ...

    @property
    def n_segments(self) -> int:
        return 1

    def contexts(self, rng: np.random.Generator, start: int, n: int) -> IntArray:
        """The segment of each of the n rounds (all 0 when the environment has no context)."""
        return np.zeros(n, dtype=np.intp)

    @abstractmethod
    def means(self, rounds: IntArray, segments: IntArray) -> FloatArray:
        """Expected reward of every arm in each round: shape (len(rounds), n_arms)."""

    def served_and_best(
        self, rounds: IntArray, segments: IntArray, arms: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per round: the served arm's expected reward, and the best arm's (for regret)."""
        means = self.means(rounds, segments)
        served: FloatArray = means[np.arange(arms.size), arms]
        best: FloatArray = means.max(axis=1)
        return served, best

    def average_means(self, round_index: int) -> FloatArray:
        """Each arm's expected reward in round `round_index`, averaged over the contexts."""
        rounds = np.array([round_index], dtype=np.intp)
        result: FloatArray = self.means(rounds, np.zeros(1, dtype=np.intp))[0]
        return result

    def noise(self, rng: np.random.Generator, n: int) -> FloatArray:
        """One common random number per round; see the module docstring."""
        if self.reward == "bernoulli":
            return rng.random(n)
        return rng.standard_normal(n)

    def draw(self, means: FloatArray, noise: FloatArray) -> FloatArray:
        """Rewards of the served arms, whose expected rewards are `means`."""
        if self.reward == "bernoulli":
            return (noise < means).astype(np.float64)
        result: FloatArray = means + self.sd * noise
        return result

    def check(self) -> None:
        if self.reward not in ("bernoulli", "gaussian"):
            raise ScenarioError(
                "reward", f"reward must be 'bernoulli' or 'gaussian', got {self.reward!r}"
            )
        sd = self.sd
        if (
            isinstance(sd, bool)
            or not isinstance(sd, int | float)
            or not (np.isfinite(sd) and sd > 0)
        ):
            raise ScenarioError("sd", f"sd must be a finite number > 0, got {self.sd!r}")

    def check_means(self, name: str, values: FloatArray) -> None:
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ScenarioError(name, f"{name} must be non-empty and finite")
        if self.reward == "bernoulli" and (values.min() < 0.0 or values.max() > 1.0):
            raise ScenarioError(
                name, f"{name} of Bernoulli arms must be in [0, 1], got {values.tolist()}"
            )


def _means_array(name: str, values: Sequence[float] | FloatArray, ndim: int) -> FloatArray:
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(name, f"{name} must be numbers: {exc}") from None
    if array.ndim != ndim:
        shape = "a list of numbers" if ndim == 1 else "a list of equal-length lists of numbers"
        raise ScenarioError(name, f"{name} must be {shape}")
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class StationaryArms(Environment):
    """Every arm pays the same expected reward forever."""

    arm_means: FloatArray

    def __post_init__(self) -> None:
        object.__setattr__(self, "arm_means", _means_array("means", self.arm_means, 1))
        self.check()
        self.check_means("means", self.arm_means)

    @property
    def n_arms(self) -> int:
        return int(self.arm_means.size)

    def means(self, rounds: IntArray, segments: IntArray) -> FloatArray:
        return np.broadcast_to(self.arm_means, (rounds.size, self.n_arms))

    def served_and_best(
        self, rounds: IntArray, segments: IntArray, arms: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        # The same numbers as the general rule, without an (n, K) array.
        served: FloatArray = self.arm_means[arms]
        return served, np.full(arms.size, self.arm_means.max())


@dataclass(frozen=True)
class SegmentedArms(Environment):
    """A contextual world: each round belongs to a segment, and segments prefer different arms.

    `segment_means[s][a]` is arm a's expected reward in segment s; segments arrive with the
    probabilities `segment_weights` (equal when omitted).
    """

    segment_means: FloatArray
    segment_weights: FloatArray | None = None

    def __post_init__(self) -> None:
        means = _means_array("segment_means", self.segment_means, 2)
        object.__setattr__(self, "segment_means", means)
        self.check()
        self.check_means("segment_means", means)
        weights = self.segment_weights
        if weights is None:
            weights = np.full(means.shape[0], 1.0 / means.shape[0])
        weights = _means_array("segment_weights", weights, 1)
        if weights.size != means.shape[0] or np.any(weights < 0) or weights.sum() <= 0:
            raise ScenarioError(
                "segment_weights",
                f"segment_weights must hold one weight >= 0 per segment ({means.shape[0]}), "
                "not all zero",
            )
        normalised = weights / weights.sum()
        normalised.flags.writeable = False
        object.__setattr__(self, "segment_weights", normalised)

    @property
    def n_arms(self) -> int:
        return int(self.segment_means.shape[1])

    @property
    def n_segments(self) -> int:
        return int(self.segment_means.shape[0])

    def contexts(self, rng: np.random.Generator, start: int, n: int) -> IntArray:
        assert self.segment_weights is not None
        # The service's inverse-CDF rule, as for arms.
        return inverse_cdf_arms(rng.random(n), self.segment_weights)

    def means(self, rounds: IntArray, segments: IntArray) -> FloatArray:
        result: FloatArray = self.segment_means[segments]
        return result

    def average_means(self, round_index: int) -> FloatArray:
        assert self.segment_weights is not None
        result: FloatArray = self.segment_weights @ self.segment_means
        return result


@dataclass(frozen=True)
class DriftingArms(Environment):
    """Arm means move from `start_means` to `end_means`.

    * abrupt: the switch happens at round `change_at`;
    * gradual: the means move linearly from round `change_at` to `change_at + duration`.
    """

    start_means: FloatArray
    end_means: FloatArray
    change_at: int
    mode: Literal["abrupt", "gradual"] = "abrupt"
    duration: int = 0

    def __post_init__(self) -> None:
        start = _means_array("start_means", self.start_means, 1)
        end = _means_array("end_means", self.end_means, 1)
        object.__setattr__(self, "start_means", start)
        object.__setattr__(self, "end_means", end)
        self.check()
        self.check_means("start_means", start)
        self.check_means("end_means", end)
        if start.size != end.size:
            raise ScenarioError(
                "end_means", "end_means must have one entry per arm, like start_means"
            )
        if self.mode not in ("abrupt", "gradual"):
            raise ScenarioError("drift", f"drift must be 'abrupt' or 'gradual', got {self.mode!r}")
        _non_negative_int("change_at", self.change_at)
        _non_negative_int("duration", self.duration)
        if self.mode == "gradual" and self.duration < 1:
            raise ScenarioError("duration", "a gradual drift needs a duration >= 1 round")

    @property
    def n_arms(self) -> int:
        return int(self.start_means.size)

    def weight_of_end(self, rounds: IntArray) -> FloatArray:
        """How far each round is along the drift: 0 before it, 1 after it."""
        if self.mode == "abrupt":
            return (rounds >= self.change_at).astype(np.float64)
        done: FloatArray = np.clip((rounds - self.change_at) / self.duration, 0.0, 1.0)
        return done

    def means(self, rounds: IntArray, segments: IntArray) -> FloatArray:
        w = self.weight_of_end(rounds)[:, None]
        result: FloatArray = (1.0 - w) * self.start_means + w * self.end_means
        return result


def _non_negative_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(name, f"{name} must be a whole number >= 0, got {value!r}")
