"""Sufficient statistics: what every test in the engine is computed from.

A `SampleStats` summarises one sample (an arm's values of one metric over one period) by
n, sum(y) and sum(y^2). It is frozen and additive, so the service fills it from a SQL
GROUP BY and merges periods or shards with `+`; no test needs the raw rows. Binary metrics
are the special case y in {0, 1}, where sum(y^2) = sum(y).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
CANCELLATION = 1e-12
"""Relative size below which sum(y^2) - n*mean^2 is rounding error (about 4500 ulps)."""


class StatsInputError(ValueError):
    """The data cannot support the requested statistic (empty arm, zero variance, ...).

    Raised instead of returning NaN, with a message that says what is missing."""


@dataclass(frozen=True, slots=True)
class SampleStats:
    n: int
    total: float
    sum_squares: float

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer) or self.n < 0:
            raise StatsInputError(f"n must be a whole count >= 0, got {self.n!r}")
        if not (math.isfinite(self.total) and math.isfinite(self.sum_squares)):
            raise StatsInputError("total and sum_squares must be finite")
        if self.sum_squares < 0:
            raise StatsInputError(f"sum_squares must be >= 0, got {self.sum_squares}")
        if self.n == 0 and (self.total != 0 or self.sum_squares != 0):
            raise StatsInputError("an empty sample (n = 0) must have total and sum_squares 0")
        # Cauchy-Schwarz: sum(y^2) >= sum(y)^2 / n for any real values (up to rounding).
        if self.n > 0 and self.sum_squares < self.total * self.total / self.n * (1 - 1e-9):
            raise StatsInputError(
                f"sum_squares={self.sum_squares} is below total^2/n="
                f"{self.total * self.total / self.n}: no real sample has these statistics"
            )

    @classmethod
    def from_values(cls, values: Iterable[float]) -> SampleStats:
        y = np.asarray(list(values), dtype=np.float64)
        return cls(int(y.size), float(y.sum()), float((y * y).sum()))

    @classmethod
    def from_binary(cls, n: int, successes: int) -> SampleStats:
        if not 0 <= successes <= n:
            raise StatsInputError(f"successes must be in [0, n={n}], got {successes}")
        return cls(n, float(successes), float(successes))

    def __add__(self, other: SampleStats) -> SampleStats:
        return SampleStats(
            self.n + other.n, self.total + other.total, self.sum_squares + other.sum_squares
        )

    @property
    def mean(self) -> float:
        if self.n == 0:
            raise StatsInputError("the sample is empty: no mean")
        return self.total / self.n

    @property
    def variance(self) -> float:
        """Unbiased sample variance (n - 1 in the denominator), never negative."""
        if self.n < 2:
            raise StatsInputError(f"a variance needs at least 2 observations, got {self.n}")
        # sum((y - mean)^2) = sum(y^2) - n * mean^2. The subtraction cancels: anything
        # below the rounding error of sum(y^2) is noise, so a constant sample gets exactly 0.
        centred = self.sum_squares - self.total * self.total / self.n
        if centred <= CANCELLATION * self.sum_squares:
            return 0.0
        return centred / (self.n - 1)

    @property
    def std_error(self) -> float:
        """Standard error of the mean."""
        return math.sqrt(self.variance / self.n)


def as_arrays(samples: Sequence[SampleStats]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(n, total, sum_squares) as float arrays, for vectorised computations over arms."""
    n = np.array([s.n for s in samples], dtype=np.float64)
    total = np.array([s.total for s in samples], dtype=np.float64)
    squares = np.array([s.sum_squares for s in samples], dtype=np.float64)
    return n, total, squares
