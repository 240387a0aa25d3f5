"""Fixed-horizon tests: published reference values, the raw-data path, seeded coverage,
properties, clear errors and the speed of a 20-arm, 10-metric report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from app.stats.fixed_horizon import (
    Comparison,
    MetricArms,
    adjust_p_values,
    compare,
    compare_report,
    compare_to_control,
    power_binary,
    power_continuous,
    sample_size_binary,
    sample_size_continuous,
)
from app.stats.sufficient import SampleStats, StatsInputError

# R's `sleep` data set (Cushny & Peebles 1905), as used by the examples of R's ?t.test.
SLEEP_GROUP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_GROUP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]

# Benjamini & Hochberg (1995), sec. 4: the 15 p-values of their worked example.
BH_1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459]
BH_1995 += [0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0000]


def stats_of(values: np.ndarray) -> SampleStats:
    return SampleStats(int(values.size), float(values.sum()), float((values * values).sum()))


def from_summary(mean: float, sd: float, n: int) -> SampleStats:
    """The sufficient statistics of a sample with this mean, sd (n - 1) and size."""
    return SampleStats(n, mean * n, sd * sd * (n - 1) + n * mean * mean)


# --- Published reference values ----------------------------------------------------------


def test_welch_matches_r_t_test_on_the_sleep_data() -> None:
    # R, ?t.test: t.test(extra ~ group, data = sleep) prints t = -1.8608, df = 17.776,
    # p-value = 0.07939, 95 percent CI -3.3654832 0.2054832 (group 1 - group 2). We compare
    # treatment (group 2) - control (group 1), so the signs flip.
    result = compare(SampleStats.from_values(SLEEP_GROUP_1), SampleStats.from_values(SLEEP_GROUP_2))
    assert result.test == "welch-t"
    assert result.absolute.estimate == pytest.approx(1.58, abs=1e-12)
    assert round(result.absolute.statistic, 4) == 1.8608
    assert result.absolute.dof is not None
    assert round(result.absolute.dof, 3) == 17.776
    assert round(result.absolute.p_value, 5) == 0.07939
    assert round(result.absolute.ci_low, 7) == -0.2054832
    assert round(result.absolute.ci_high, 7) == 3.3654832


def test_one_sided_welch_matches_r_on_the_sleep_data() -> None:
    # t.test(extra ~ group, data = sleep, alternative = "less") gives p = 0.0397, half the
    # two-sided 0.07939 (as published in R teaching material on this example).
    result = compare(
        SampleStats.from_values(SLEEP_GROUP_1),
        SampleStats.from_values(SLEEP_GROUP_2),
        alternative="greater",
    )
    assert round(result.absolute.p_value, 4) == 0.0397
    assert result.absolute.ci_high == math.inf
    assert result.absolute.ci_low > 0  # rejects at 5 %, as the one-sided p says


def test_two_proportion_z_matches_r_prop_test_small_samples() -> None:
    # DTU course 02402 (Introduction to Statistics), exercise 7.4 solution: defects 6/50
    # against 12/50. z = -1.561738, p = 0.1183498; prop.test(correct = F) prints the
    # 95 % interval -0.26875081 0.02875081.
    result = compare(SampleStats.from_binary(50, 12), SampleStats.from_binary(50, 6), kind="binary")
    assert result.test == "two-proportion-z"
    assert result.absolute.dof is None
    assert round(result.absolute.statistic, 6) == -1.561738
    assert round(result.absolute.p_value, 7) == 0.1183498
    assert round(result.absolute.ci_low, 8) == -0.26875081
    assert round(result.absolute.ci_high, 8) == 0.02875081


def test_two_proportion_z_matches_r_prop_test_large_samples() -> None:
    # DTU 02402 exam with solutions: humanities enrolment 7297/30817 (2016) against
    # 6691/30193 (2017). prop.test(correct = FALSE): X-squared = 19.9, p = 8.2e-06, 95 %
    # interval 0.0085083 0.0218461 for 2016 - 2017 (we report 2017 - 2016).
    result = compare(
        SampleStats.from_binary(30817, 7297), SampleStats.from_binary(30193, 6691), kind="binary"
    )
    assert round(result.absolute.statistic**2, 1) == 19.9
    assert f"{result.absolute.p_value:.1e}" == "8.2e-06"
    assert round(result.absolute.ci_low, 7) == -0.0218461
    assert round(result.absolute.ci_high, 7) == -0.0085083


def test_relative_lift_matches_growthbook_gbstats() -> None:
    # growthbook/growthbook packages/stats/tests/frequentist/test_tests.py: control 0.41
    # (sd 3.9, n 3407), treatment 0.70 (sd 6.2, n 3461). Commit 59f39a7 (delta-method
    # relative lift): 0.70732, CI [-0.03526, 1.44989], sd 0.37879, p 0.06191. Commit
    # 06b4ae4 (absolute): 0.29, CI [0.04538, 0.53462], p 0.02016.
    result = compare(from_summary(0.41, 3.9, 3407), from_summary(0.70, 6.2, 3461))
    assert result.relative is not None
    assert round(result.relative.estimate, 5) == 0.70732
    assert round(result.relative.std_error, 5) == 0.37879
    assert round(result.relative.ci_low, 5) == -0.03526
    assert round(result.relative.ci_high, 5) == 1.44989
    assert round(result.relative.p_value, 5) == 0.06191
    assert round(result.absolute.ci_low, 5) == 0.04538
    assert round(result.absolute.ci_high, 5) == 0.53462
    assert round(result.absolute.p_value, 5) == 0.02016


def test_power_and_sample_size_match_r_power_prop_test() -> None:
    # R, ?power.prop.test: power.prop.test(n = 50, p1 = .50, p2 = .75) => power = 0.740;
    # power.prop.test(p1 = .50, p2 = .75, power = .90) => n = 76.7 (77 units per arm).
    assert round(power_binary(baseline=0.5, mde=0.25, n_control=50), 3) == 0.740
    assert sample_size_binary(baseline=0.5, mde=0.25, power=0.9).control == 77


def test_power_and_sample_size_match_r_power_t_test() -> None:
    # R, ?power.t.test: power.t.test(n = 20, delta = 1) => power = 0.8689528;
    # power.t.test(power = .90, delta = 1) => n = 22.02110 (23 units per arm), and with
    # alternative = "one.sided" n = 17.84713. R counts only the rejection region on the
    # side of the effect; statsmodels adds the other side's 2e-7 for two-sided tests.
    assert power_continuous(std=1.0, mde=1.0, n_control=20) == pytest.approx(0.8689528, abs=1e-6)
    assert sample_size_continuous(std=1.0, mde=1.0, power=0.9).treatment == 23
    one_sided = sample_size_continuous(std=1.0, mde=1.0, power=0.9, alternative="greater")
    assert one_sided.control == 18


def test_standard_case_ten_percent_baseline_one_point_mde_needs_14751_per_arm() -> None:
    # 10 % -> 11 %, two-sided alpha 0.05, power 0.8. The closed form that R's
    # power.prop.test solves (pooled variance under H0, unpooled under H1) gives 14,750.8.
    # (Evan Miller's calculator uses the baseline variance 2p(1-p) under H0 and says 14,313;
    # Cohen's h with NormalIndPower says 14,745.)
    p1, p2 = 0.10, 0.11
    z_a, z_b = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    pooled = (p1 + p2) / 2
    closed_form = (
        z_a * math.sqrt(2 * pooled * (1 - pooled)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    assert closed_form == pytest.approx(14750.79, abs=0.01)
    size = sample_size_binary(baseline=0.10, mde=0.01)
    assert (size.control, size.treatment) == (14751, 14751)
    assert sample_size_binary(baseline=0.10, mde=0.10, relative=True) == size
    assert power_binary(baseline=0.10, mde=0.01, n_control=14751) >= 0.8
    assert power_binary(baseline=0.10, mde=0.01, n_control=14700) < 0.8


def test_unequal_split_sample_size_reaches_the_power() -> None:
    size = sample_size_binary(baseline=0.10, mde=0.01, ratio=2.0)
    assert size.treatment == pytest.approx(2 * size.control, abs=2)
    assert power_binary(baseline=0.10, mde=0.01, n_control=size.control, ratio=2.0) >= 0.8 - 1e-4
    relative = sample_size_continuous(std=20.0, mde=0.02, baseline_mean=50.0, relative=True)
    assert relative == sample_size_continuous(std=20.0, mde=1.0)


def test_multiple_testing_reproduces_benjamini_hochberg_1995() -> None:
    # BH (1995) sec. 4: at q = 0.05 their procedure rejects the four smallest p-values;
    # Holm's thresholds 0.05/15, 0.05/14, ... stop after three.
    bh = adjust_p_values(BH_1995, method="fdr_bh", alpha=0.05)
    assert bh.reject == (True,) * 4 + (False,) * 11
    assert round(bh.p_adjusted[0], 4) == 0.0015  # R: p.adjust(p, "BH")[1]
    holm = adjust_p_values(BH_1995, method="holm", alpha=0.05)
    assert holm.reject == (True,) * 3 + (False,) * 12
    # R, p.adjust(c(0.01, 0.04, 0.03, 0.005), "BH") = 0.02 0.04 0.04 0.02
    small = adjust_p_values([0.01, 0.04, 0.03, 0.005], method="fdr_bh")
    assert small.p_adjusted == pytest.approx([0.02, 0.04, 0.04, 0.02])


# --- Sufficient statistics give exactly the raw-data answers -----------------------------


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_from_sufficient_statistics_equals_scipy_and_statsmodels_on_raw_rows(
    alternative: str,
) -> None:
    rng = np.random.default_rng(1)
    control, treatment = rng.gamma(2.0, 3.0, 400), rng.gamma(2.2, 3.0, 250)
    ours = compare(
        stats_of(control),
        stats_of(treatment),
        alternative=alternative,  # type: ignore[arg-type]
        alpha=0.1,
    ).absolute
    scipy_result = stats.ttest_ind(treatment, control, equal_var=False, alternative=alternative)
    interval = scipy_result.confidence_interval(confidence_level=0.9)
    assert ours.statistic == pytest.approx(scipy_result.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(scipy_result.pvalue, rel=1e-9)
    assert ours.dof == pytest.approx(scipy_result.df, rel=1e-10)
    assert ours.ci_low == pytest.approx(interval.low, rel=1e-9)
    assert ours.ci_high == pytest.approx(interval.high, rel=1e-9)
    sm_alternative = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}
    means = CompareMeans(DescrStatsW(treatment), DescrStatsW(control))
    low, high = means.tconfint_diff(
        alpha=0.1, alternative=sm_alternative[alternative], usevar="unequal"
    )
    assert (ours.ci_low, ours.ci_high) == pytest.approx((low, high), rel=1e-9)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_proportions_from_counts_equal_statsmodels_per_pair(alternative: str) -> None:
    rng = np.random.default_rng(2)
    sm_alternative = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}
    for _ in range(20):
        n_c, n_t = (int(x) for x in rng.integers(20, 5000, size=2))
        x_c, x_t = int(rng.binomial(n_c, 0.3)), int(rng.binomial(n_t, 0.33))
        ours = compare(
            SampleStats.from_binary(n_c, x_c),
            SampleStats.from_binary(n_t, x_t),
            kind="binary",
            alternative=alternative,  # type: ignore[arg-type]
        ).absolute
        z, p = proportions_ztest([x_t, x_c], [n_t, n_c], alternative=sm_alternative[alternative])
        assert ours.statistic == pytest.approx(z, rel=1e-10)
        assert ours.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
        if alternative == "two-sided":
            low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald")
            assert (ours.ci_low, ours.ci_high) == pytest.approx((low, high), rel=1e-9)


def test_vectorised_comparisons_equal_one_pair_at_a_time() -> None:
    rng = np.random.default_rng(3)
    control = stats_of(rng.normal(10, 2, 300))
    treatments = [stats_of(rng.normal(10 + i / 10, 2 + i / 5, 100 + 50 * i)) for i in range(8)]
    together = compare_to_control(control, treatments, alternative="less")
    for arm, result in zip(treatments, together, strict=True):
        assert result == compare(control, arm, alternative="less")


def test_holm_equals_statsmodels_multipletests_including_ties() -> None:
    rng = np.random.default_rng(4)
    for size in (1, 2, 7, 50, 190):
        p = np.round(rng.uniform(0, 0.2, size) ** 2, 4)  # rounding makes ties
        ours = adjust_p_values(p, method="holm", alpha=0.05)
        reject, adjusted, _, _ = multipletests(p, alpha=0.05, method="holm")
        assert ours.p_adjusted == pytest.approx(adjusted.tolist(), rel=1e-12)
        assert ours.reject == tuple(reject.tolist())
    assert adjust_p_values([], method="holm").p_adjusted == ()


# --- Seeded simulations ------------------------------------------------------------------

# 4,000 replications: Monte-Carlo sd of a 95 % coverage is sqrt(.95 * .05 / 4000) = 0.0034.
# We accept +-0.0138 (4 sd): a correct 95 % interval fails this with probability 6e-5.
COVERAGE_REPS = 4000
COVERAGE_TOLERANCE = 4 * math.sqrt(0.95 * 0.05 / COVERAGE_REPS)


def test_delta_method_lift_covers_the_true_lift_95_percent_skewed_continuous() -> None:
    rng = np.random.default_rng(20240601)
    n, true_lift = 2000, 0.05  # gamma(shape 2): skewed like revenue; means 10 and 10.5
    relative_hits = absolute_hits = 0
    for _ in range(COVERAGE_REPS):
        control = stats_of(rng.gamma(2.0, 5.0, n))
        treatment = stats_of(rng.gamma(2.0, 5.0 * (1 + true_lift), n))
        result = compare(control, treatment)
        assert result.relative is not None
        relative_hits += result.relative.ci_low <= true_lift <= result.relative.ci_high
        absolute_hits += result.absolute.ci_low <= 0.5 <= result.absolute.ci_high
    # Measured with this seed: 0.950 (relative) and 0.951 (absolute).
    assert relative_hits / COVERAGE_REPS == pytest.approx(0.95, abs=COVERAGE_TOLERANCE)
    assert absolute_hits / COVERAGE_REPS == pytest.approx(0.95, abs=COVERAGE_TOLERANCE)


def test_delta_method_lift_covers_the_true_lift_95_percent_binary() -> None:
    rng = np.random.default_rng(20240602)
    n, p_control, p_treatment = 20_000, 0.10, 0.11
    hits = 0
    for x_c, x_t in zip(
        rng.binomial(n, p_control, COVERAGE_REPS),
        rng.binomial(n, p_treatment, COVERAGE_REPS),
        strict=True,
    ):
        result = compare(
            SampleStats.from_binary(n, int(x_c)),
            SampleStats.from_binary(n, int(x_t)),
            kind="binary",
        )
        assert result.relative is not None
        hits += result.relative.ci_low <= 0.1 <= result.relative.ci_high
    assert hits / COVERAGE_REPS == pytest.approx(0.95, abs=COVERAGE_TOLERANCE)  # measured 0.9525


# --- Properties --------------------------------------------------------------------------

samples = st.lists(st.floats(-1000, 1000, allow_nan=False), min_size=3, max_size=40)


def _spread(values: list[float]) -> bool:
    return float(np.std(values)) > 1e-2


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_swapping_arms_negates_the_difference_and_keeps_the_p_value(
    a: list[float], b: list[float]
) -> None:
    assume(_spread(a) and _spread(b))
    forward = compare(SampleStats.from_values(a), SampleStats.from_values(b)).absolute
    backward = compare(SampleStats.from_values(b), SampleStats.from_values(a)).absolute
    assert backward.estimate == pytest.approx(-forward.estimate, rel=1e-9, abs=1e-9)
    assert backward.p_value == pytest.approx(forward.p_value, rel=1e-6, abs=1e-12)
    assert backward.ci_low == pytest.approx(-forward.ci_high, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5000), st.integers(2, 5000), st.floats(0, 1), st.floats(0, 1), st.booleans())
def test_swapping_binary_arms_keeps_the_p_value(
    n_a: int, n_b: int, rate_a: float, rate_b: float, greater: bool
) -> None:
    a = SampleStats.from_binary(n_a, round(rate_a * n_a))
    b = SampleStats.from_binary(n_b, round(rate_b * n_b))
    assume(0 < a.total < n_a or 0 < b.total < n_b)
    forward = compare(a, b, kind="binary", alternative="greater" if greater else "less")
    backward = compare(b, a, kind="binary", alternative="less" if greater else "greater")
    assert backward.absolute.estimate == pytest.approx(-forward.absolute.estimate, abs=1e-12)
    assert backward.absolute.p_value == pytest.approx(forward.absolute.p_value, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(samples, samples, st.floats(-100, 100))
def test_shifting_every_value_leaves_the_difference_and_its_test_unchanged(
    a: list[float], b: list[float], shift: float
) -> None:
    assume(_spread(a) and _spread(b))
    plain = compare(SampleStats.from_values(a), SampleStats.from_values(b)).absolute
    shifted = compare(
        SampleStats.from_values([x + shift for x in a]),
        SampleStats.from_values([x + shift for x in b]),
    ).absolute
    assert shifted.estimate == pytest.approx(plain.estimate, rel=1e-6, abs=1e-6)
    assert shifted.std_error == pytest.approx(plain.std_error, rel=1e-6)
    assert shifted.p_value == pytest.approx(plain.p_value, rel=1e-4, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(samples, samples, st.floats(0.01, 100))
def test_scaling_every_value_scales_the_difference_and_keeps_p_and_lift(
    a: list[float], b: list[float], scale: float
) -> None:
    assume(_spread(a) and _spread(b) and float(np.mean(a)) > 1e-3)  # lift needs a positive base
    plain = compare(SampleStats.from_values(a), SampleStats.from_values(b))
    scaled = compare(
        SampleStats.from_values([x * scale for x in a]),
        SampleStats.from_values([x * scale for x in b]),
    )
    assert scaled.absolute.estimate == pytest.approx(
        scale * plain.absolute.estimate, rel=1e-6, abs=1e-9
    )
    assert scaled.absolute.ci_high == pytest.approx(
        scale * plain.absolute.ci_high, rel=1e-6, abs=1e-9
    )
    assert scaled.absolute.p_value == pytest.approx(plain.absolute.p_value, rel=1e-6, abs=1e-12)
    assert plain.relative is not None
    assert scaled.relative is not None
    assert scaled.relative.estimate == pytest.approx(plain.relative.estimate, rel=1e-6, abs=1e-9)


# --- Clear errors, never NaN -------------------------------------------------------------

EMPTY = SampleStats(0, 0.0, 0.0)
SPREAD = SampleStats.from_values([1.0, 2.0, 3.0])
CONSTANT = SampleStats.from_values([2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("control", "treatment", "kind", "message"),
    [
        (EMPTY, SPREAD, "continuous", "the control arm is empty"),
        (SPREAD, EMPTY, "continuous", "treatment arm 0 is empty"),
        (SPREAD, SampleStats.from_values([1.0]), "continuous", "has 1 observation"),
        (CONSTANT, CONSTANT, "continuous", "both have zero variance"),
        (EMPTY, SampleStats.from_binary(10, 2), "binary", "the control arm is empty"),
        (SampleStats.from_binary(10, 0), SampleStats.from_binary(20, 0), "binary", "zero variance"),
        (SampleStats.from_binary(10, 10), SampleStats.from_binary(9, 0), "binary", "zero variance"),
        (SampleStats.from_binary(10, 3), SPREAD, "binary", "is not a binary metric"),
    ],
)
def test_comparisons_that_cannot_be_made_raise_clear_errors(
    control: SampleStats, treatment: SampleStats, kind: str, message: str
) -> None:
    with pytest.raises(StatsInputError, match=message):
        compare(control, treatment, kind=kind)  # type: ignore[arg-type]


def test_the_arm_at_fault_is_named_among_many() -> None:
    with pytest.raises(StatsInputError, match="treatment arm 2 both have zero variance"):
        compare_to_control(CONSTANT, [SPREAD, SPREAD, CONSTANT])
    with pytest.raises(StatsInputError, match="no treatment arm"):
        compare_to_control(SPREAD, [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, r"alpha must be in \(0, 1\), got 0.0"),
        ({"alpha": 1.5}, "alpha must be in"),
        ({"alternative": "bigger"}, "alternative must be 'two-sided', 'greater' or 'less'"),
        ({"kind": "count"}, "kind must be 'continuous' or 'binary'"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(StatsInputError, match=message):
        compare(SPREAD, SPREAD, **kwargs)  # type: ignore[arg-type]


def test_one_constant_arm_is_fine_for_welch() -> None:
    result = compare(CONSTANT, SampleStats.from_values([1.0, 2.0, 4.0, 5.0]))
    assert result.absolute.dof == pytest.approx(3.0)  # all variance from the treatment
    assert 0 < result.absolute.p_value < 1


def test_undefined_lift_is_none_not_nan() -> None:
    # No conversion in control: the difference is testable, the lift is not defined.
    no_control_conversions = compare(
        SampleStats.from_binary(1000, 0), SampleStats.from_binary(1000, 12), kind="binary"
    )
    assert no_control_conversions.relative is None
    assert 0 < no_control_conversions.absolute.p_value < 0.01
    # A treatment that never converts: lift -1 with a zero delta-method error.
    no_treatment_conversions = compare(
        SampleStats.from_binary(1000, 12), SampleStats.from_binary(1000, 0), kind="binary"
    )
    assert no_treatment_conversions.relative is None
    for value in _floats(no_control_conversions) + _floats(no_treatment_conversions):
        assert not math.isnan(value)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=30),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=30),
    st.sampled_from(["two-sided", "greater", "less"]),
)
def test_any_comparison_is_numbers_or_a_clear_error_never_nan(
    a: list[float], b: list[float], alternative: str
) -> None:
    control, treatment = SampleStats.from_values(a), SampleStats.from_values(b)
    if control.variance == 0.0 and treatment.variance == 0.0:
        with pytest.raises(StatsInputError, match="zero variance"):
            compare(control, treatment)
        return
    result = compare(control, treatment, alternative=alternative)  # type: ignore[arg-type]
    effects = [result.absolute] if result.relative is None else [result.absolute, result.relative]
    for effect in effects:
        values = [effect.estimate, effect.ci_low, effect.ci_high, effect.p_value, effect.statistic]
        assert not any(math.isnan(v) for v in values)
        assert 0.0 <= effect.p_value <= 1.0


def _floats(result: Comparison) -> list[float]:
    effect = result.absolute
    return [effect.estimate, effect.ci_low, effect.ci_high, effect.p_value, effect.statistic]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline": 0.0, "mde": 0.01}, r"baseline must be a rate in \(0, 1\)"),
        ({"baseline": 0.995, "mde": 0.01}, "baseline \\+ effect must be a rate"),
        ({"baseline": 0.1, "mde": 0.0}, "mde must not be 0"),
        ({"baseline": 0.1, "mde": -0.01, "alternative": "greater"}, "'greater' alternative"),
        ({"baseline": 0.1, "mde": 0.01, "power": 0.04}, r"power must be in \(alpha, 1\)"),
        ({"baseline": 0.1, "mde": 0.01, "ratio": 0.0}, "ratio"),
    ],
)
def test_impossible_binary_designs_raise_clear_errors(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(StatsInputError, match=message):
        sample_size_binary(**kwargs)  # type: ignore[arg-type]


def test_impossible_continuous_designs_raise_clear_errors() -> None:
    with pytest.raises(StatsInputError, match="std must be a positive number"):
        sample_size_continuous(std=0.0, mde=1.0)
    with pytest.raises(StatsInputError, match="a relative mde needs"):
        sample_size_continuous(std=1.0, mde=0.05, relative=True)
    with pytest.raises(StatsInputError, match="n_control must be at least 2"):
        power_continuous(std=1.0, mde=1.0, n_control=1)


def test_bad_p_values_and_methods_raise_clear_errors() -> None:
    with pytest.raises(StatsInputError, match=r"p-values must be numbers in \[0, 1\]"):
        adjust_p_values([0.1, math.nan])
    with pytest.raises(StatsInputError, match="method must be one of"):
        adjust_p_values([0.1], method="sidak")  # type: ignore[arg-type]


# --- Reports -----------------------------------------------------------------------------


def _report_metrics(arms: int, metrics: int, seed: int) -> dict[str, MetricArms]:
    rng = np.random.default_rng(seed)
    out: dict[str, MetricArms] = {}
    for m in range(metrics):
        binary = m % 2 == 0

        def arm(shift: float, binary: bool = binary) -> SampleStats:
            n = int(rng.integers(5000, 20000))
            if binary:
                return SampleStats.from_binary(n, int(rng.binomial(n, 0.10 + shift)))
            return stats_of(rng.gamma(2.0, 5.0 + shift, n))

        out[f"metric_{m}"] = MetricArms(
            "binary" if binary else "continuous",
            arm(0.0),
            {f"arm_{a}": arm(0.02 if a == 1 else 0.0) for a in range(1, arms)},
        )
    return out


def test_report_corrects_every_metric_and_arm_as_one_family() -> None:
    metrics = _report_metrics(arms=4, metrics=3, seed=5)
    report = compare_report(metrics, correction="fdr_bh")
    assert [(r.metric, r.arm) for r in report.rows] == [
        (m, a) for m in metrics for a in ("arm_1", "arm_2", "arm_3")
    ]
    raw = [r.comparison.absolute.p_value for r in report.rows]
    expected = adjust_p_values(raw, method="fdr_bh")
    assert tuple(r.p_adjusted for r in report.rows) == expected.p_adjusted
    assert tuple(r.reject for r in report.rows) == expected.reject
    frame = report.to_frame()
    assert len(frame) == 9
    assert frame["p_adjusted"].tolist() == list(expected.p_adjusted)
    assert frame["relative"].dtype == "Float64"


def test_report_table_shows_an_undefined_lift_as_missing_not_nan() -> None:
    metrics = {
        "signups": MetricArms(
            "binary", SampleStats.from_binary(500, 0), {"b": SampleStats.from_binary(500, 7)}
        )
    }
    frame = compare_report(metrics).to_frame()
    assert frame.loc[0, "relative"] is pd.NA
    assert not math.isnan(frame.loc[0, "p_value"])


def test_report_errors_name_the_metric() -> None:
    metrics = {"revenue": MetricArms("continuous", CONSTANT, {"b": CONSTANT})}
    with pytest.raises(StatsInputError, match="metric 'revenue'"):
        compare_report(metrics)


def test_twenty_arm_ten_metric_report_compares_every_arm_on_every_metric() -> None:
    # Its speed is measured in benchmarks/stats.py (speed claims live there, not in tests).
    metrics = _report_metrics(arms=20, metrics=10, seed=6)
    report = compare_report(metrics, correction="holm")
    assert len(report.rows) == 190


def test_lift_against_a_negative_baseline_is_left_undefined() -> None:
    # Treatment -9 beats control -10 ("greater"), but -9/-10 - 1 = -0.1 would point the other
    # way; the lift is therefore None while the absolute test rejects.
    rng = np.random.default_rng(8)
    control = SampleStats.from_values(rng.normal(-10.0, 1.0, 2000))
    treatment = SampleStats.from_values(rng.normal(-9.0, 1.0, 2000))
    result = compare(control, treatment, alternative="greater")
    assert result.absolute.p_value < 1e-6
    assert result.relative is None
