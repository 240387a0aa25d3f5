"""Sufficient statistics: additive, exact for known samples, clear errors when undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.stats.sufficient import SampleStats, StatsInputError, as_arrays

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=50)


def test_mean_and_variance_match_numpy() -> None:
    y = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    s = SampleStats.from_values(y)
    assert s.mean == 5.0
    assert s.variance == pytest.approx(np.var(y, ddof=1), rel=1e-12)
    assert s.std_error == pytest.approx(math.sqrt(np.var(y, ddof=1) / 8), rel=1e-12)


@given(values, values)
def test_merging_periods_equals_pooling_the_rows(a: list[float], b: list[float]) -> None:
    merged = SampleStats.from_values(a) + SampleStats.from_values(b)
    pooled = SampleStats.from_values(a + b)
    assert merged.n == pooled.n
    assert merged.total == pytest.approx(pooled.total, rel=1e-9, abs=1e-6)
    assert merged.sum_squares == pytest.approx(pooled.sum_squares, rel=1e-9, abs=1e-6)


def test_binary_metric_is_the_special_case_of_zeros_and_ones() -> None:
    assert SampleStats.from_binary(10, 3) == SampleStats.from_values([1] * 3 + [0] * 7)
    with pytest.raises(StatsInputError, match="successes must be in"):
        SampleStats.from_binary(3, 4)


def test_undefined_statistics_raise_clear_errors_not_nan() -> None:
    with pytest.raises(StatsInputError, match="empty"):
        _ = SampleStats(0, 0.0, 0.0).mean
    with pytest.raises(StatsInputError, match="at least 2"):
        _ = SampleStats(1, 1.0, 1.0).variance
    with pytest.raises(StatsInputError, match="finite"):
        SampleStats(2, math.nan, 1.0)


def test_constant_sample_has_exactly_zero_variance() -> None:
    assert SampleStats.from_values([0.1] * 1000).variance == 0.0


def test_arrays_stack_arms_in_order() -> None:
    n, total, squares = as_arrays([SampleStats(2, 3.0, 5.0), SampleStats(4, 1.0, 1.0)])
    assert n.tolist() == [2.0, 4.0]
    assert total.tolist() == [3.0, 1.0]
    assert squares.tolist() == [5.0, 1.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 10.0, 1.0), "no real sample"),
        ((0, 1.0, 1.0), "empty sample"),
        ((2.5, 1.0, 1.0), "whole count"),
        ((True, 1.0, 1.0), "whole count"),
        ((3, 1.0, -1.0), ">= 0"),
    ],
)
def test_impossible_statistics_are_refused(args: tuple[object, float, float], message: str) -> None:
    with pytest.raises(StatsInputError, match=message):
        SampleStats(*args)  # type: ignore[arg-type]
