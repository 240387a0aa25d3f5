"""Bayesian summaries against published values, closed forms and scipy quadrature.

Sources:
* Evan Miller, "Formulas for Bayesian A/B Testing" (2015): P(p_B > p_A) for integer alpha_B.
* cprior (guillermo-navas-palencia/cprior, tests/test_beta.py): exact P(X1 > X0) and expected
  losses to 10 digits, and a 3-arm P(best) / expected loss computed by Monte Carlo (rel 1e-2).
* GrowthBook gbstats (packages/stats/tests/bayesian/test_tests.py): two-arm "risk" for a
  binomial (49/100 vs 51/100, Beta(1, 1) prior) and a Gaussian metric, to 5 decimals.
* scipy.integrate.quad / dblquad for everything else.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from app.stats.bayes import (
    BetaPrior,
    beta_posterior,
    normal_posterior,
    summarize,
    summarize_beta,
    summarize_binary,
    summarize_continuous,
    summarize_normal,
)
from app.stats.p_best import p_best_beta, p_best_normal
from app.stats.sufficient import SampleStats, StatsInputError
from tests.stats.test_p_best import miller_b_beats_a

QUADRATURE_TOLERANCE = 1e-6  # the integration error is ~1e-7; the product target is 1e-3


def quad_on_pieces(f: object, points: np.ndarray) -> float:
    edges = np.unique(points)
    return sum(
        integrate.quad(f, lo, hi, epsabs=1e-14, epsrel=1e-11, limit=200)[0]  # type: ignore[arg-type]
        for lo, hi in itertools.pairwise(edges)
    )


def beta_breakpoints(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    levels = np.linspace(1e-10, 1 - 1e-10, 25)
    return np.concatenate(
        [[0.0, 1.0], *(stats.beta.ppf(levels, a[j], b[j]) for j in range(a.size))]
    )


# --- published and closed-form reference values -------------------------------------------


@pytest.mark.parametrize(
    ("control", "variant"),
    [((1, 1), (2, 1)), ((10, 20), (12, 19)), ((50, 1), (1, 50)), ((1000, 1000), (1010, 990))],
)
def test_beta_chance_to_beat_matches_evan_millers_closed_form(
    control: tuple[int, int], variant: tuple[int, int]
) -> None:
    summary = summarize_beta([control[0], variant[0]], [control[1], variant[1]], control=0)
    expected = miller_b_beats_a(control[0], control[1], variant[0], variant[1])
    assert summary.chance_to_beat_control[1] == pytest.approx(expected, abs=QUADRATURE_TOLERANCE)


@pytest.mark.parametrize(
    ("a0", "b0", "a1", "b1", "expected"),
    [
        (10, 50, 60, 250, 0.7088919200),
        (600, 550, 52, 60, 0.1223144258),
        (1000, 900, 1200, 1000, 0.8898254504),
        (1000, 900, 1200, 800, 0.9999982656),
        (100.1, 90.1, 100.1, 90.1, 0.5),
    ],
)
def test_beta_chance_to_beat_matches_cprior(
    a0: float, b0: float, a1: float, b1: float, expected: float
) -> None:
    """cprior tests/test_beta.py: beta_cprior(a0, b0, a1, b1) = P(X1 > X0) (10 digits)."""
    summary = summarize_beta([a0, a1], [b0, b1], control=0)
    assert summary.chance_to_beat_control[1] == pytest.approx(expected, abs=QUADRATURE_TOLERANCE)


def test_beta_expected_loss_matches_cprior_ab_test() -> None:
    """cprior BetaABTest(A=Beta(40, 60), B=Beta(70, 90)), method='exact':
    P(A > B) = 0.2737282537; expected_loss(A) = E[max(B - A, 0)] = 0.0481119843 and
    expected_loss(B) = E[max(A - B, 0)] = 0.0106119843."""
    summary = summarize_beta([40, 70], [60, 90], control=1)  # control = B
    tolerance = QUADRATURE_TOLERANCE
    assert summary.chance_to_beat_control[0] == pytest.approx(0.2737282537, abs=tolerance)
    assert summary.risk_vs_control[0] == pytest.approx(0.0481119843, abs=tolerance)
    assert summary.control_risk[0] == pytest.approx(0.0106119843, abs=tolerance)
    assert summary.expected_loss == pytest.approx([0.0481119843, 0.0106119843], abs=tolerance)


def test_three_arm_p_best_and_loss_match_cprior_monte_carlo_and_quadrature() -> None:
    """cprior BetaMVTest A=Beta(40, 600), B=Beta(70, 900), C=Beta(100, 1400):
    probability_vs_all(B) = 0.6003181 and expected_loss_vs_all(B) = 0.0030189172, both from
    Monte Carlo / MLHS and asserted there to rel 1e-2; quadrature pins our value to 1e-6."""
    a, b = np.array([40.0, 70, 100]), np.array([600.0, 900, 1400])
    summary = summarize_beta(a, b)
    assert summary.p_best[1] == pytest.approx(0.6003181, rel=1e-2)
    assert summary.expected_loss[1] == pytest.approx(0.0030189172, rel=1e-2)
    points = beta_breakpoints(a, b)
    for i in range(3):
        others = [j for j in range(3) if j != i]

        def integrand(t: float, i: int = i, others: list[int] = others) -> float:
            cdf = special.betainc(a, b, t)
            return float(cdf[i] * (1.0 - np.prod(cdf[others])))

        assert summary.expected_loss[i] == pytest.approx(
            quad_on_pieces(integrand, points), abs=QUADRATURE_TOLERANCE
        )


def test_binomial_risk_matches_growthbook() -> None:
    """gbstats BinomialBayesianABTest(49/100, 51/100), Beta(1, 1) prior:
    risk = [0.03872, 0.01912] = [E[max(B - A, 0)], E[max(A - B, 0)]] (control A, variant B).
    (Its chance_to_win 0.61052 comes from a log-normal approximation; ours is exact.)"""
    arms = [SampleStats.from_binary(100, 49), SampleStats.from_binary(100, 51)]
    summary = summarize_binary(arms, control=0)
    assert round(summary.control_risk[1], 5) == 0.03872
    assert round(summary.risk_vs_control[1], 5) == 0.01912
    exact = miller_b_beats_a(50, 52, 52, 50)
    assert summary.chance_to_beat_control[1] == pytest.approx(exact, abs=QUADRATURE_TOLERANCE)


def test_gaussian_risk_matches_growthbook() -> None:
    """gbstats GaussianBayesianABTest(SampleMeanStatistic(n=10, sum=100, sum_squares=1002.25),
    (n=10, sum=105, sum_squares=1111.5)), flat prior: risk = [0.51256, 0.01256]. Its
    chance_to_win 0.92427 is log-normal; the exact Normal value is Phi(0.5 / sqrt(0.125))."""
    arms = [SampleStats(10, 100.0, 1002.25), SampleStats(10, 105.0, 1111.5)]
    summary = summarize_continuous(arms, control=0)
    assert round(summary.control_risk[1], 5) == 0.51256
    assert round(summary.risk_vs_control[1], 5) == 0.01256
    assert summary.chance_to_beat_control[1] == pytest.approx(
        stats.norm.cdf(0.5 / math.sqrt(0.125)), abs=1e-12
    )


def test_normal_chance_to_beat_and_risks_match_quadrature() -> None:
    mean, sd = np.array([1.0, 1.3, 0.2, 1.05]), np.array([0.2, 0.5, 0.05, 0.01])
    summary = summarize_normal(mean, sd, control=0)
    c = 0
    for i in range(1, 4):
        lo = min(mean[i], mean[c]) - 12 * max(sd[i], sd[c])
        hi = max(mean[i], mean[c]) + 12 * max(sd[i], sd[c])
        points = np.concatenate([mean[[i, c]], np.linspace(lo, hi, 81)])
        chance = quad_on_pieces(
            lambda t, i=i: stats.norm.pdf(t, mean[i], sd[i]) * stats.norm.cdf(t, mean[c], sd[c]),
            points,
        )
        risk = quad_on_pieces(
            lambda t, i=i: stats.norm.cdf(t, mean[i], sd[i]) * stats.norm.sf(t, mean[c], sd[c]),
            points,
        )
        assert summary.chance_to_beat_control[i] == pytest.approx(chance, abs=1e-9)
        assert summary.risk_vs_control[i] == pytest.approx(risk, abs=1e-9)


def test_two_arm_loss_matches_dblquad_of_the_definition() -> None:
    """E[max(theta_B - theta_A, 0)] as the double integral of its definition."""
    a, b = np.array([3.0, 5.0]), np.array([7.0, 6.0])

    def loss_a(y: float, x: float) -> float:  # x = theta_A, y = theta_B
        return max(y - x, 0.0) * stats.beta.pdf(x, a[0], b[0]) * stats.beta.pdf(y, a[1], b[1])

    expected = integrate.dblquad(loss_a, 0, 1, 0, 1, epsabs=1e-10, epsrel=1e-9)[0]
    summary = summarize_beta(a, b, control=1)
    assert summary.expected_loss[0] == pytest.approx(expected, abs=1e-7)
    assert summary.risk_vs_control[0] == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_k_arm_loss_and_pairwise_results_match_quadrature_on_random_problems(seed: int) -> None:
    """Counts 1 to 1e5, shapes from Jeffreys-like to huge, 2-4 arms, Beta and Normal."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 5))
    n = 10 ** rng.uniform(0, 5, k)
    p = rng.uniform(0.01, 0.99, k)
    a, b = n * p + rng.uniform(0.3, 2, k), n * (1 - p) + rng.uniform(0.3, 2, k)
    summary = summarize_beta(a, b, control=0)
    points = beta_breakpoints(a, b)
    for i in range(k):

        def loss(t: float, i: int = i) -> float:
            cdf = special.betainc(a, b, t)  # every arm's CDF at t
            return float(cdf[i] * (1.0 - np.prod(np.delete(cdf, i))))

        def risk(t: float, i: int = i) -> float:
            return float(special.betainc(a[i], b[i], t) * special.betaincc(a[0], b[0], t))

        assert summary.expected_loss[i] == pytest.approx(
            quad_on_pieces(loss, points), abs=QUADRATURE_TOLERANCE
        )
        if i != 0:  # the control's own risk is 0 by definition
            assert summary.risk_vs_control[i] == pytest.approx(
                quad_on_pieces(risk, points), abs=QUADRATURE_TOLERANCE
            )

    mean, sd = rng.normal(0, 1, k), 10 ** rng.uniform(-2, 0.5, k)
    normal = summarize_normal(mean, sd)
    grid = np.concatenate([mean[j] + sd[j] * np.linspace(-10, 10, 21) for j in range(k)])
    for i in range(k):

        def normal_loss(t: float, i: int = i) -> float:
            cdf = special.ndtr((t - mean) / sd)
            return float(cdf[i] * (1.0 - np.prod(np.delete(cdf, i))))

        assert normal.expected_loss[i] == pytest.approx(
            quad_on_pieces(normal_loss, grid), abs=QUADRATURE_TOLERANCE
        )


def test_jeffreys_prior_arms_have_the_arcsine_mean_absolute_difference() -> None:
    """Two Beta(1/2, 1/2) (arcsine) arms: E|X - Y| = 4 / pi^2, so each risk is 2 / pi^2."""
    summary = summarize_binary(
        [SampleStats.from_binary(0, 0)] * 2, prior=BetaPrior(0.5, 0.5), control=0
    )
    assert summary.control_risk[1] == pytest.approx(2 / math.pi**2, abs=1e-9)
    assert summary.p_best == pytest.approx([0.5, 0.5], abs=1e-12)


def test_p_best_comes_from_p_best_module() -> None:
    a, b = np.array([12.0, 30, 7]), np.array([40.0, 80, 33])
    assert np.array_equal(summarize_beta(a, b).p_best, p_best_beta(a, b))
    mean, sd = np.array([0.1, 0.2]), np.array([0.05, 0.04])
    assert np.array_equal(summarize_normal(mean, sd).p_best, p_best_normal(mean, sd))


# --- properties ------------------------------------------------------------------------------

beta_arms = st.lists(
    st.tuples(st.integers(0, 2000), st.integers(0, 2000)).map(lambda t: (t[0], t[0] + t[1])),
    min_size=2,
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(arms=beta_arms, data=st.data())
def test_permuting_arms_permutes_every_summary(
    arms: list[tuple[int, int]], data: st.DataObject
) -> None:
    stats_list = [SampleStats.from_binary(n, s) for s, n in arms]
    control = data.draw(st.integers(0, len(arms) - 1))
    order = data.draw(st.permutations(range(len(arms))))
    base = summarize_binary(stats_list, control=control)
    permuted = summarize_binary([stats_list[j] for j in order], control=order.index(control))
    for field in ("p_best", "chance_to_beat_control", "expected_loss", "risk_vs_control"):
        assert getattr(permuted, field) == pytest.approx(
            getattr(base, field)[list(order)], abs=1e-7
        )
    assert base.p_best.sum() == pytest.approx(1.0, abs=1e-12)
    assert base.chance_to_beat_control[control] == 0.5
    # E[max(c - i, 0)] - E[max(i - c, 0)] = E[c] - E[i], exactly.
    mean = base.posterior_mean
    assert base.control_risk - base.risk_vs_control == pytest.approx(mean - mean[control], abs=1e-8)
    assert np.all(base.expected_loss >= base.risk_vs_control - 1e-9)


@settings(max_examples=40, deadline=None)
@given(
    mean=st.lists(st.floats(-5, 5), min_size=2, max_size=6),
    shift=st.floats(-100, 100),
    scale=st.floats(0.01, 2.0),
    data=st.data(),
)
def test_normal_summaries_are_invariant_to_shifting_all_means(
    mean: list[float], shift: float, scale: float, data: st.DataObject
) -> None:
    sd = data.draw(st.lists(st.floats(0.05, 1.0), min_size=len(mean), max_size=len(mean)))
    mu, sigma = np.array(mean) * scale, np.array(sd) * scale
    base = summarize_normal(mu, sigma)
    shifted = summarize_normal(mu + shift, sigma)
    for field in ("p_best", "chance_to_beat_control", "expected_loss", "risk_vs_control"):
        assert getattr(shifted, field) == pytest.approx(getattr(base, field), abs=1e-6)
    assert base.p_best.sum() == pytest.approx(1.0, abs=1e-12)


def test_two_arm_expected_loss_is_the_pairwise_risk() -> None:
    summary = summarize_normal([1.0, 1.2], [0.3, 0.2], control=0)
    assert summary.expected_loss[1] == pytest.approx(summary.risk_vs_control[1], abs=1e-9)
    assert summary.expected_loss[0] == pytest.approx(summary.control_risk[1], abs=1e-9)


def test_identical_arms_tie_exactly() -> None:
    summary = summarize_beta([30, 30, 30], [70, 70, 70], control=2)
    assert summary.p_best == pytest.approx([1 / 3] * 3, abs=1e-12)
    assert summary.chance_to_beat_control == pytest.approx([0.5] * 3, abs=QUADRATURE_TOLERANCE)
    assert summary.expected_loss == pytest.approx([summary.expected_loss[0]] * 3, abs=1e-15)


def test_lower_is_better_flips_the_metric() -> None:
    normal = summarize_normal([1.0, 0.8, 1.1], [0.1, 0.1, 0.2], lower_is_better=True)
    flipped = summarize_normal([-1.0, -0.8, -1.1], [0.1, 0.1, 0.2])
    for field in ("p_best", "chance_to_beat_control", "expected_loss", "risk_vs_control"):
        assert getattr(normal, field) == pytest.approx(getattr(flipped, field), abs=1e-12)
    assert normal.posterior_mean.tolist() == [1.0, 0.8, 1.1]
    beta = summarize_beta([40, 70], [60, 90], lower_is_better=True)
    swapped = summarize_beta([60, 90], [40, 70])
    assert beta.p_best == pytest.approx(swapped.p_best, abs=1e-12)
    assert beta.expected_loss == pytest.approx(swapped.expected_loss, abs=1e-12)


def test_single_arm_is_best_with_no_loss() -> None:
    summary = summarize_beta([3], [4])
    assert summary.p_best.tolist() == [1.0]
    assert summary.expected_loss.tolist() == [0.0]
    assert summary.chance_to_beat_control.tolist() == [0.5]


def test_posteriors_follow_the_stated_models() -> None:
    arms = [SampleStats.from_binary(100, 7), SampleStats.from_binary(0, 0)]
    alpha, beta = beta_posterior(arms, BetaPrior(2.0, 3.0))
    assert alpha.tolist() == [9.0, 2.0]
    assert beta.tolist() == [96.0, 3.0]
    values = [1.0, 2.0, 4.0, 7.0]
    mean, sd = normal_posterior([SampleStats.from_values(values)])
    assert mean[0] == pytest.approx(3.5)
    assert sd[0] == pytest.approx(np.std(values, ddof=1) / 2.0)


def test_summary_arrays_are_read_only_and_tabulate() -> None:
    summary = summarize_beta([5, 6], [5, 4])
    with pytest.raises(ValueError, match="read-only"):
        summary.p_best[0] = 0.0
    frame = summary.to_frame()
    assert list(frame.index) == [0, 1]
    assert frame["p_best"].sum() == pytest.approx(1.0)


# Speed is measured in benchmarks/stats.py, not asserted in unit tests.


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: summarize_binary([]), "at least one arm is needed, got none"),
        (
            lambda: summarize_continuous([SampleStats.from_values([1.0]), SampleStats(0, 0, 0)]),
            "arm 0 has 1 observation(s); the Normal posterior of a mean needs at least 2",
        ),
        (
            lambda: summarize_continuous([SampleStats.from_values([2.0, 2.0, 2.0])] * 2),
            "arm 0 has zero variance (all 3 values equal 2)",
        ),
        (
            lambda: summarize_binary([SampleStats.from_values([0.5, 0.5, 1.0])]),
            "arm 0 is not a binary metric: sum_squares (1.5) must equal total (2)",
        ),
        (
            lambda: summarize_binary([SampleStats(3, 5.0, 9.0)]),  # y = 1, 2, 2
            "arm 0 is not a binary metric: total (successes) must be in [0, n=3], got 5",
        ),
        (
            lambda: summarize_beta([1, 2], [1, 2], control=2),
            "control must be an arm index in [0, 2)",
        ),
        (lambda: summarize_beta([1, 0], [1, 2]), "alpha must be > 0, got [1.0, 0.0]"),
        (lambda: summarize_beta([1, 2], [1]), "alpha and beta need one entry per arm, got 2 and 1"),
        (lambda: summarize_normal([0.0, np.nan], [1, 1]), "mean must be finite"),
        (
            lambda: summarize_normal([1e9, 1e9], [1e-6, 1.0]),
            "cannot be resolved in double precision",
        ),
        (lambda: BetaPrior(0.0, 1.0), "prior alpha must be finite and > 0, got 0.0"),
        (
            lambda: summarize([SampleStats.from_binary(10, 1)], kind="count"),  # type: ignore[arg-type]
            "kind must be 'continuous' or 'binary', got 'count'",
        ),
        (
            lambda: summarize(
                [SampleStats.from_values([1.0, 2.0])] * 2, kind="continuous", prior=BetaPrior()
            ),
            "prior is the Beta prior of a binary metric",
        ),
    ],
)
def test_bad_input_raises_an_actionable_error(call: object, message: str) -> None:
    with pytest.raises(StatsInputError) as error:
        call()  # type: ignore[operator]
    assert message in str(error.value)


def test_summarize_dispatches_on_the_metric_kind() -> None:
    binary_arms = [SampleStats.from_binary(1000, 100), SampleStats.from_binary(1000, 130)]
    prior = BetaPrior(2.0, 5.0)
    pd.testing.assert_frame_equal(
        summarize(binary_arms, kind="binary", control=1, prior=prior).to_frame(),
        summarize_binary(binary_arms, control=1, prior=prior).to_frame(),
    )
    continuous_arms = [
        SampleStats.from_values([1.0, 2.0, 4.0, 8.0]),
        SampleStats.from_values([2.0, 3.0, 5.0, 9.0]),
    ]
    pd.testing.assert_frame_equal(
        summarize(continuous_arms, kind="continuous", lower_is_better=True).to_frame(),
        summarize_continuous(continuous_arms, lower_is_better=True).to_frame(),
    )
