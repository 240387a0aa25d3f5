"""Drift: PSI by hand, its properties, binning rules, seeded false-alarm and detection rates,
and per-arm reward drift against statsmodels with Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from app.stats.drift import (
    MISSING,
    OTHER,
    band,
    categorical_psi,
    numeric_bin_edges,
    numeric_psi,
    psi_from_counts,
    reward_drift,
)
from app.stats.sufficient import SampleStats, StatsInputError

# --- Reference values ------------------------------------------------------------------------


def test_hand_computed_four_bin_example() -> None:
    # Reference shares 0.25 each; recent 0.1, 0.2, 0.3, 0.4. By hand (ln to 6 places):
    #   (0.1 - 0.25) ln(0.1 / 0.25) = -0.15 * -0.916291 = 0.137444
    #   (0.2 - 0.25) ln(0.2 / 0.25) = -0.05 * -0.223144 = 0.011157
    #   (0.3 - 0.25) ln(0.3 / 0.25) =  0.05 *  0.182322 = 0.009116
    #   (0.4 - 0.25) ln(0.4 / 0.25) =  0.15 *  0.470004 = 0.070501
    #   PSI = 0.228218: "moderate" (0.1 <= PSI < 0.25).
    result = psi_from_counts([25, 25, 25, 25], [10, 20, 30, 40], smoothing=0)
    assert result.psi == pytest.approx(0.228218, abs=1e-6)
    assert [round(b.contribution, 6) for b in result.bins] == [
        0.137444,
        0.011157,
        0.009116,
        0.070501,
    ]
    assert result.band == "moderate"
    assert [b.recent_share for b in result.bins] == [0.1, 0.2, 0.3, 0.4]


def test_textbook_score_band_example() -> None:
    # A scorecard-monitoring style table (Siddiqi 2006, ch. 8 layout): development shares
    # 10/20/40/20/10 % against recent 5/15/35/25/20 %. By hand:
    #   -0.05 ln 0.5 = 0.034657;  -0.05 ln 0.75 = 0.014384;  -0.05 ln 0.875 = 0.006677
    #    0.05 ln 1.25 = 0.011157;  0.10 ln 2    = 0.069315;  sum = 0.136190
    result = psi_from_counts([100, 200, 400, 200, 100], [50, 150, 350, 250, 200], smoothing=0)
    assert result.psi == pytest.approx(0.136190, abs=1e-6)
    assert result.band == "moderate"


def test_smoothing_adds_half_a_count_to_every_kept_bin() -> None:
    # Bin 3 is empty in the reference: without smoothing PSI would be infinite.
    ref, rec = [50, 50, 0, 0], [40, 40, 20, 0]  # the last bin is empty in both: dropped
    r = np.array([50.5, 50.5, 0.5]) / 101.5
    s = np.array([40.5, 40.5, 20.5]) / 101.5
    by_hand = float(((s - r) * np.log(s / r)).sum())
    result = psi_from_counts(ref, rec, labels=["a", "b", "c", "d"])
    assert result.psi == pytest.approx(by_hand, rel=1e-12)
    assert [b.label for b in result.bins] == ["a", "b", "c"]
    assert result.bins[2].reference_share == 0.0  # evidence shows the raw shares
    assert result.band == "significant"
    with pytest.raises(StatsInputError, match="infinite"):
        psi_from_counts(ref, rec, smoothing=0)


@pytest.mark.parametrize(
    ("psi", "expected"),
    [
        (0.0, "stable"),
        (0.0999, "stable"),
        (0.1, "moderate"),
        (0.2499, "moderate"),
        (0.25, "significant"),
        (3.0, "significant"),
    ],
)
def test_bands(psi: float, expected: str) -> None:
    assert band(psi) == expected


def test_p_value_is_the_chi_square_approximation() -> None:
    # n = m = 100 and 4 bins: PSI / (1/100 + 1/100) against chi-square with 3 dof.
    result = psi_from_counts([25, 25, 25, 25], [10, 20, 30, 40], smoothing=0)
    assert result.p_value == pytest.approx(stats.chi2.sf(result.psi / 0.02, 3), rel=1e-12)
    assert 0.0096 < result.p_value < 0.0098


# --- Properties ------------------------------------------------------------------------------

counts = st.lists(st.integers(0, 500), min_size=2, max_size=12)


@settings(max_examples=200, deadline=None)
@given(counts, st.data())
def test_psi_is_non_negative_and_symmetric_in_the_two_count_vectors(
    ref: list[int], data: st.DataObject
) -> None:
    rec = data.draw(st.lists(st.integers(0, 500), min_size=len(ref), max_size=len(ref)))
    if sum(ref) == 0 or sum(rec) == 0:
        return
    forward = psi_from_counts(ref, rec)
    assert forward.psi >= 0.0
    # (s - r) ln(s / r) = (r - s) ln(r / s): swapping the windows' counts changes nothing.
    assert psi_from_counts(rec, ref).psi == pytest.approx(forward.psi, rel=1e-12, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=2, max_size=12), st.integers(1, 50))
def test_psi_is_zero_for_identical_shares_and_invariant_to_scaling(
    ref: list[int], scale: int
) -> None:
    assert psi_from_counts(ref, [c * scale for c in ref], smoothing=0).psi == pytest.approx(
        0.0, abs=1e-12
    )
    rec = list(reversed(ref))
    plain = psi_from_counts(ref, rec, smoothing=0).psi
    scaled = psi_from_counts([c * scale for c in ref], [c * scale for c in rec], smoothing=0)
    assert scaled.psi == pytest.approx(plain, rel=1e-9, abs=1e-12)


def test_smoothing_vanishes_as_samples_grow() -> None:
    ref, rec = np.array([25, 25, 25, 25]), np.array([10, 20, 30, 40])
    exact = 0.22821740957339182
    gaps = [abs(psi_from_counts(ref * k, rec * k).psi - exact) for k in (1, 10, 100, 1000)]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 2e-5  # O(bins / n): n = 100,000 here


def test_numeric_psi_is_not_symmetric_because_bins_come_from_the_reference() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 5000), rng.normal(0, 2, 5000)
    forward, backward = numeric_psi(a, b).psi, numeric_psi(b, a).psi
    assert forward > 0.25
    assert backward > 0.25
    assert forward != pytest.approx(backward, rel=0.01)


# --- Binning rules ---------------------------------------------------------------------------


def test_numeric_bins_are_reference_deciles_and_outside_values_go_to_the_end_bins() -> None:
    reference = np.arange(1000, dtype=float)
    edges = numeric_bin_edges(reference)
    assert edges.tolist() == pytest.approx(np.quantile(reference, np.arange(1, 10) / 10))
    result = numeric_psi(reference, [-1e9, -5.0, 2e6, math.inf, -math.inf])
    by_label = {b.label: b for b in result.bins}
    assert by_label["(-inf, 99.9)"].recent == 3
    assert by_label["[899.1, inf)"].recent == 2
    assert [b.reference for b in result.bins] == [100] * 10


def test_ties_and_constant_features_do_not_make_empty_bins() -> None:
    spike = np.r_[np.zeros(700), np.arange(1, 301)]  # 70 % zeros
    edges = numeric_bin_edges(spike)
    assert len(edges) == len(set(edges.tolist())) < 9
    same = numeric_psi(spike, spike)
    assert same.psi == 0.0
    constant = numeric_psi(np.full(500, 3.0), np.full(400, 3.0))
    assert constant.psi == 0.0
    assert [b.label for b in constant.bins] == ["[3, inf)"]
    moved = numeric_psi(np.full(500, 3.0), np.full(400, 2.0))
    assert moved.band == "significant"


def test_missing_values_get_their_own_bin() -> None:
    reference = np.arange(200, dtype=float)
    recent = np.r_[np.arange(100, dtype=float), np.full(100, np.nan)]
    result = numeric_psi(reference, recent)
    assert result.bins[-1].label == MISSING
    assert result.bins[-1].recent == 100
    assert result.band == "significant"
    assert categorical_psi(["a", None], ["a", "a"]).bins[1].label == MISSING


def test_rare_categories_beyond_top_k_are_merged_into_other() -> None:
    reference = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 5 + ["e"] * 5
    recent = ["a"] * 10 + ["b"] * 30 + ["new"] * 60  # a category the reference never saw
    result = categorical_psi(reference, recent, top_k=3)
    # a, b and new each have reference share + recent share 0.6: ties go by label.
    assert [b.label for b in result.bins] == ["a", "b", "new", OTHER]
    other = result.bins[-1]
    assert (other.reference, other.recent) == (20, 0)
    assert result.band == "significant"


def test_categories_compare_by_string_form() -> None:
    assert categorical_psi([1, True, "x"], ["1", "True", "x"]).psi == pytest.approx(0.0)


def test_clear_errors() -> None:
    with pytest.raises(StatsInputError, match="at least one observation"):
        categorical_psi([], ["a"])
    with pytest.raises(StatsInputError, match="same bins"):
        psi_from_counts([1, 2], [1, 2, 3])
    with pytest.raises(StatsInputError, match="whole numbers"):
        psi_from_counts([1, -2], [1, 2])
    with pytest.raises(StatsInputError, match="bins"):
        numeric_bin_edges([1.0, 2.0], bins=1)
    with pytest.raises(StatsInputError, match="numbers"):
        numeric_psi(["a", "b"], [1.0])


# --- Seeded simulation -----------------------------------------------------------------------


def _false_alarms(rng: np.random.Generator, runs: int, n: int) -> tuple[float, float]:
    """Share of runs with PSI >= 0.1, over a numeric and a categorical feature."""
    numeric = categorical = 0
    cats = np.array(list("abcdefghij"))
    shares = np.array([0.3, 0.2, 0.1, 0.1, 0.08, 0.07, 0.05, 0.05, 0.03, 0.02])
    for _ in range(runs):
        numeric += numeric_psi(rng.lognormal(0, 1, n), rng.lognormal(0, 1, n)).psi >= 0.1
        categorical += (
            categorical_psi(rng.choice(cats, n, p=shares), rng.choice(cats, n, p=shares)).psi >= 0.1
        )
    return numeric / runs, categorical / runs


def test_same_distribution_stays_stable_at_n_2000() -> None:
    rng = np.random.default_rng(20261127)
    numeric, categorical = _false_alarms(rng, 200, 2000)
    assert numeric <= 0.05
    assert categorical <= 0.05
    # In fact E[PSI] ~ 9 * (2 / 2000) = 0.009: a false "moderate" never happens at this n.
    assert numeric == 0.0
    assert categorical == 0.0


def test_same_distribution_rarely_passes_the_noise_gate_at_small_n() -> None:
    # At n = 200 per window PSI alone is noisy (E ~ 0.09 for deciles); the chi-square
    # p-value is what keeps false alarms rare there.
    rng = np.random.default_rng(11)
    p_values = [numeric_psi(rng.normal(size=200), rng.normal(size=200)).p_value for _ in range(400)]
    assert np.mean(np.array(p_values) < 0.01) <= 0.02


def test_shifted_distribution_is_significant() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        # Mean shift of one standard deviation; a category mix that moves 30 % of the mass.
        assert numeric_psi(rng.normal(0, 1, 2000), rng.normal(1, 1, 2000)).psi >= 0.25
        ref = rng.choice(["a", "b", "c"], 2000, p=[0.6, 0.3, 0.1])
        rec = rng.choice(["a", "b", "c"], 2000, p=[0.3, 0.3, 0.4])
        assert categorical_psi(ref, rec).psi >= 0.25


# --- Reward drift ----------------------------------------------------------------------------


def test_reward_drift_matches_statsmodels_and_holm() -> None:
    reference = [SampleStats.from_binary(1000, 100), SampleStats.from_binary(1000, 200)]
    recent = [SampleStats.from_binary(800, 80), SampleStats.from_binary(900, 135)]
    result = reward_drift(reference, recent, kind="binary", alpha=0.05)
    raw = [
        proportions_ztest([100, 80], [1000, 800])[1],
        proportions_ztest([200, 135], [1000, 900])[1],
    ]
    holm = multipletests(raw, method="holm")[1]
    assert [a.p_value for a in result.arms] == pytest.approx(raw, rel=1e-9)
    assert [a.p_adjusted for a in result.arms] == pytest.approx(holm, rel=1e-9)
    assert [a.drift for a in result.arms] == [False, True]
    assert result.arms[1].difference == pytest.approx(0.15 - 0.2)
    assert result.test == "two-proportion z"


def test_reward_drift_skips_small_or_constant_arms() -> None:
    big = SampleStats.from_values(np.random.default_rng(1).normal(1.0, 1.0, 500))
    small = SampleStats.from_values([1.0] * 10)
    constant = SampleStats.from_values([2.0] * 100)
    result = reward_drift([big, small, constant], [big, small, constant])
    assert result.arms[0].p_value == pytest.approx(1.0)
    assert result.arms[1].p_value is None
    assert "fewer than 30" in (result.arms[1].note or "")
    assert result.arms[2].p_value is None
    assert result.arms[2].note
    assert result.drifted == ()


def test_reward_drift_false_alarm_rate_is_at_most_alpha() -> None:
    rng = np.random.default_rng(3)
    alarms = 0
    runs = 400
    for _ in range(runs):
        ref = [SampleStats.from_binary(2000, int(rng.binomial(2000, p))) for p in (0.1, 0.2, 0.3)]
        rec = [SampleStats.from_binary(500, int(rng.binomial(500, p))) for p in (0.1, 0.2, 0.3)]
        alarms += bool(reward_drift(ref, rec, kind="binary", alpha=0.05).drifted)
    assert alarms / runs <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)
