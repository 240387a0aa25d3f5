"""The shared checks and the metric-kind vocabulary of app.stats.common."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest

from app.stats import bayes, fixed_horizon, sequential
from app.stats.common import (
    BINARY_TOLERANCE,
    check_alpha,
    check_binary,
    check_kind,
    mean_variance,
    mean_variances,
)
from app.stats.sufficient import SampleStats, StatsInputError

# --- check_alpha -------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 1e-12, 0.999, np.float64(0.1), np.float32(0.25)])
def test_check_alpha_returns_a_valid_alpha_as_a_float(alpha: float) -> None:
    checked = check_alpha(alpha)
    assert type(checked) is float
    assert checked == float(alpha)


@pytest.mark.parametrize(
    ("alpha", "message"),
    [
        (0.0, "alpha must be in (0, 1), got 0.0"),
        (0, "alpha must be in (0, 1), got 0.0"),
        (1.0, "alpha must be in (0, 1), got 1.0"),
        (-0.1, "alpha must be in (0, 1), got -0.1"),
        (math.nan, "alpha must be in (0, 1), got nan"),
        (math.inf, "alpha must be in (0, 1), got inf"),
        (True, "alpha must be a number, got True"),
        ("0.05", "alpha must be a number, got '0.05'"),
        (None, "alpha must be a number, got None"),
    ],
)
def test_check_alpha_refuses_anything_outside_the_open_unit_interval(
    alpha: object, message: str
) -> None:
    with pytest.raises(StatsInputError, match=re.escape(message)):
        check_alpha(alpha)  # type: ignore[arg-type]


# --- check_kind --------------------------------------------------------------------------


def test_check_kind() -> None:
    assert check_kind("continuous") == "continuous"
    assert check_kind("binary") == "binary"
    with pytest.raises(StatsInputError, match="kind must be 'continuous' or 'binary', got 'count'"):
        check_kind("count")


# --- check_binary ------------------------------------------------------------------------


def test_check_binary_accepts_exact_zero_one_statistics() -> None:
    check_binary("arm", SampleStats.from_binary(1000, 123))
    check_binary("arm", SampleStats.from_binary(10, 0))
    check_binary("arm", SampleStats.from_binary(10, 10))
    check_binary("arm", SampleStats.from_values([0.0, 1.0, 1.0, 0.0]))
    check_binary("arm", SampleStats(0, 0.0, 0.0))  # empty: the caller decides


def test_check_binary_accepts_rounding_within_the_relative_tolerance() -> None:
    total = 1234.0
    slack = 0.5 * BINARY_TOLERANCE * total
    check_binary("arm", SampleStats(5000, total, total + slack))
    check_binary("arm", SampleStats(5000, total, total - slack))
    # Below a total of 1 the slack is absolute: 1e-9.
    check_binary("arm", SampleStats(10, 0.0, 0.5e-9))


def test_check_binary_refuses_a_deviation_outside_the_tolerance() -> None:
    total = 1234.0
    slack = 2.0 * BINARY_TOLERANCE * total
    with pytest.raises(
        StatsInputError, match=re.escape("the control arm is not a binary metric: sum_squares")
    ):
        check_binary("the control arm", SampleStats(5000, total, total + slack))
    with pytest.raises(StatsInputError, match="arm 3 is not a binary metric: sum_squares"):
        check_binary("arm 3", SampleStats(5000, total, total - slack))
    with pytest.raises(StatsInputError, match=re.escape("sum_squares (1.5) must equal total (2)")):
        check_binary("arm", SampleStats.from_values([0.5, 0.5, 1.0]))


def test_check_binary_refuses_a_total_outside_zero_to_n() -> None:
    with pytest.raises(
        StatsInputError,
        match=re.escape(
            "arm 1 is not a binary metric: total (successes) must be in [0, n=3], got 5"
        ),
    ):
        check_binary("arm 1", SampleStats(3, 5.0, 9.0))  # y = 1, 2, 2
    with pytest.raises(StatsInputError, match=re.escape("must be in [0, n=2], got 3")):
        # total > n even though sum_squares == total (y = 1.5, 1.5)
        check_binary("arm", SampleStats(2, 3.0, 3.0 * 1.5))
    with pytest.raises(StatsInputError, match=re.escape("must be in [0, n=4], got -1")):
        check_binary("arm", SampleStats(4, -1.0, 1.0))


Check = Callable[[SampleStats], object]
BINARY_CONSUMERS: list[tuple[str, Check]] = [
    (
        "fixed_horizon",
        lambda arm: fixed_horizon.compare(SampleStats.from_binary(5000, 600), arm, kind="binary"),
    ),
    (
        "sequential",
        lambda arm: sequential.msprt(
            SampleStats.from_binary(5000, 600), arm, planned_n=10_000, kind="binary"
        ),
    ),
    (
        "bayes",
        lambda arm: bayes.summarize([SampleStats.from_binary(5000, 600), arm], kind="binary"),
    ),
]


@pytest.mark.parametrize(
    "consume", [c[1] for c in BINARY_CONSUMERS], ids=[c[0] for c in BINARY_CONSUMERS]
)
def test_every_binary_consumer_applies_the_same_rule(consume: Check) -> None:
    total = 700.0
    consume(SampleStats(5000, total, total))  # exact
    consume(SampleStats(5000, total, total * (1.0 + 0.5 * BINARY_TOLERANCE)))  # merged shards
    with pytest.raises(StatsInputError, match="is not a binary metric"):
        consume(SampleStats(5000, total, total * (1.0 + 2.0 * BINARY_TOLERANCE)))
    with pytest.raises(StatsInputError, match="is not a binary metric"):
        consume(SampleStats(5000, 5001.0, 5001.0 * 1.0003))


# --- mean_variance -----------------------------------------------------------------------


def test_mean_variance_of_a_continuous_metric_is_welch_s2_over_n() -> None:
    values = [1.0, 2.0, 4.0, 7.0, 11.0]
    arm = SampleStats.from_values(values)
    assert mean_variance(arm, "continuous") == pytest.approx(
        float(np.var(values, ddof=1)) / len(values), rel=1e-14
    )


def test_mean_variance_of_a_binary_metric_is_the_bernoulli_plug_in() -> None:
    arm = SampleStats.from_binary(2000, 200)
    assert mean_variance(arm, "binary") == pytest.approx(0.1 * 0.9 / 2000, rel=1e-14)
    # Not the unbiased sample variance (n - 1), which the continuous kind uses.
    assert mean_variance(arm, "continuous") == pytest.approx(0.1 * 0.9 / 1999, rel=1e-12)
    assert mean_variance(SampleStats.from_binary(1, 1), "binary") == 0.0


def test_mean_variances_is_mean_variance_per_arm() -> None:
    arms = [SampleStats.from_binary(100, 10), SampleStats.from_binary(300, 150)]
    got = mean_variances(arms, "binary")
    assert got.dtype == np.float64
    assert got.tolist() == [mean_variance(arm, "binary") for arm in arms]


@pytest.mark.parametrize(
    ("arm", "kind", "message"),
    [
        (SampleStats(0, 0.0, 0.0), "binary", "the sample is empty"),
        (SampleStats.from_values([3.0]), "continuous", "a variance needs at least 2"),
        (SampleStats.from_binary(10, 1), "count", "kind must be 'continuous' or 'binary'"),
    ],
)
def test_mean_variance_refuses_what_it_cannot_compute(
    arm: SampleStats, kind: str, message: str
) -> None:
    with pytest.raises(StatsInputError, match=message):
        mean_variance(arm, kind)  # type: ignore[arg-type]


def test_fixed_horizon_reexports_the_shared_vocabulary() -> None:
    from app.stats import common

    assert fixed_horizon.MetricKind is common.MetricKind
    assert fixed_horizon.Alternative is common.Alternative
