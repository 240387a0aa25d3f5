"""What the statistics modules share: the metric-kind vocabulary and the input checks.

* `MetricKind` ("continuous" or "binary") and `Alternative` name the same things in every
  module (fixed_horizon, sequential, bayes).
* `check_alpha` is the one significance-level check.
* `check_binary` is the one rule for "these SampleStats are those of 0/1 values".
* `mean_variance` is the one variance of an arm's mean for a metric kind: Welch's s^2 / n
  for continuous metrics, the Bernoulli plug-in p(1 - p) / n for binary ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from app.stats.sufficient import FloatArray, SampleStats, StatsInputError

MetricKind = Literal["continuous", "binary"]
METRIC_KINDS: tuple[MetricKind, ...] = ("continuous", "binary")

Alternative = Literal["two-sided", "greater", "less"]
"""About treatment - control: "greater" means the treatment is expected to be higher."""

BINARY_TOLERANCE = 1e-9
"""Relative slack allowed between sum(y^2) and sum(y) for a binary metric.

For 0/1 values sum(y^2) == sum(y) exactly, and a SQL SUM over 0/1 floats is exact (every
partial sum is a whole number far below 2^53). The slack, 1e-9 relative to max(1, total), is
for statistics merged from shards or periods with float arithmetic elsewhere, which may
round; any real non-0/1 value moves sum(y^2) - sum(y) by far more (e.g. 0.5 by 0.25)."""


def check_alpha(alpha: float) -> float:
    """alpha as a float, if it is a number in the open interval (0, 1); else StatsInputError.

    NaN and infinities are outside (0, 1); bools and strings are not numbers."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.integer | np.floating):
        raise StatsInputError(f"alpha must be a number, got {alpha!r}")
    value = float(alpha)
    if not 0.0 < value < 1.0:  # also rejects NaN
        raise StatsInputError(f"alpha must be in (0, 1), got {value}")
    return value


def check_kind(kind: str) -> MetricKind:
    """kind, if it is a MetricKind; else StatsInputError."""
    if kind not in METRIC_KINDS:
        raise StatsInputError(f"kind must be 'continuous' or 'binary', got {kind!r}")
    return kind


def check_binary(name: str, stats: SampleStats) -> None:
    """Refuse statistics that cannot come from 0/1 values.

    The rule: 0 <= total <= n, and |sum_squares - total| <= BINARY_TOLERANCE * max(1, total)
    (see BINARY_TOLERANCE for why there is any slack). An empty arm (n = 0) passes: whether
    it may be used is the caller's decision. `name` names the arm in the message, e.g.
    "the control arm" or "arm 2"."""
    if not 0.0 <= stats.total <= stats.n:
        raise StatsInputError(
            f"{name} is not a binary metric: total (successes) must be in [0, n={stats.n}], "
            f"got {stats.total:g}"
        )
    if abs(stats.sum_squares - stats.total) > BINARY_TOLERANCE * max(1.0, stats.total):
        raise StatsInputError(
            f"{name} is not a binary metric: sum_squares ({stats.sum_squares:g}) must equal "
            f"total ({stats.total:g}) when every value is 0 or 1 (n={stats.n}); use "
            "kind='continuous' for other metrics"
        )


def mean_variance(stats: SampleStats, kind: MetricKind) -> float:
    """The estimated variance of the arm's mean.

    continuous: s^2 / n with the unbiased sample variance s^2 (Welch); needs n >= 2.
    binary: the Bernoulli plug-in p (1 - p) / n with p = total / n (maximum likelihood, as in
    the two-proportion z-test and Johari et al.'s mSPRT); needs n >= 1. It does not check
    that the statistics are 0/1 (see check_binary)."""
    if kind == "binary":
        if stats.n == 0:
            raise StatsInputError("the sample is empty: no rate, so no variance of it")
        p = stats.total / stats.n
        return p * (1.0 - p) / stats.n
    if kind == "continuous":
        return stats.variance / stats.n
    raise StatsInputError(f"kind must be 'continuous' or 'binary', got {kind!r}")


def mean_variances(arms: Sequence[SampleStats], kind: MetricKind) -> FloatArray:
    """`mean_variance` of each arm, as a float array (one entry per arm)."""
    return np.array([mean_variance(arm, kind) for arm in arms], dtype=np.float64)
