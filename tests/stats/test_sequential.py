"""Always-valid inference: published reference values, independent computations, seeded
simulation studies of peeking, properties, and input errors.

Sources of the reference values:
* confseq (gostevehoward/confseq), test/uniform_boundaries_unittest.cpp, MixtureTest
  TestTwoSidedNormalMixture: best_rho(100, 0.05) = 12.60056, log_superMG(10, 100) = -0.6510052,
  bound(100, log(1/0.05)) = 30.35209 ("from a reference implementation in R").
* GrowthBook gbstats, packages/stats/tests/frequentist/test_tests.py, TestSequentialTTest
  (two-sided AsympCS; their rho is Waudby-Smith et al. v7 eq. 161) and the absolute-difference
  fixtures of TestOneSidedGreaterTTest (estimate and standard error from the same SampleStats).
No paper gives a worked mSPRT or AsympCS example with numbers; the mixture likelihood ratio and
its interval are also checked against direct numerical integration and root finding (scipy).

Simulations are seeded and vectorised over replicates x looks (no Python loop over either):
normal-theory studies are compared in both directions with the exact false-positive rate of
their look schedule (group-sequential recursion), within 3 Monte-Carlo standard errors. The
whole file runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, special, stats

from app.stats.common import MetricKind
from app.stats.group_sequential import boundary_crossing_probabilities
from app.stats.sequential import (
    DEFAULT_MIN_N,
    SequentialMonitor,
    SequentialResult,
    asymptotic_cs,
    asymptotic_cs_log_evalue,
    asymptotic_cs_margin,
    asymptotic_cs_rho_squared,
    mixture_log_likelihood_ratio,
    mixture_radius,
    msprt,
    msprt_mixing_variance,
)
from app.stats.sufficient import SampleStats, StatsInputError

FloatArray = npt.NDArray[np.float64]
ALPHA = 0.05
Test = Callable[..., SequentialResult]
METHODS: tuple[Test, ...] = (msprt, asymptotic_cs)


def stats_from_moments(n: int, mean: float, sd: float) -> SampleStats:
    """SampleStats with this n, mean and (unbiased) standard deviation."""
    return SampleStats(n, n * mean, (n - 1) * sd * sd + n * mean * mean)


# -- Reference values --------------------------------------------------------------------


def test_mixing_variance_matches_confseq_best_rho() -> None:
    # confseq: rho = best_rho(v=100, alpha=0.05) = 12.60056 in intrinsic time (sum of variances).
    # With unit variance, t = 100 observations and lambda = theta / sigma^2, rho = 1 / tau^2.
    tau2 = float(msprt_mixing_variance(1.0, planned_n=100, alpha=0.05))
    assert 1.0 / tau2 == pytest.approx(12.60056, abs=1e-5)


def test_log_likelihood_ratio_matches_confseq_log_super_martingale() -> None:
    # confseq: log_superMG(s=10, v=100) = -0.6510052. In estimate units: d = s/t = 0.1,
    # Var(d) = v/t^2 = 0.01 (unit variance, t = 100).
    tau2 = msprt_mixing_variance(1.0, planned_n=100, alpha=0.05)
    log_lambda = float(mixture_log_likelihood_ratio(0.1, 0.01, tau2))
    assert log_lambda == pytest.approx(-0.6510052, abs=1e-6)


def test_interval_radius_matches_confseq_bound() -> None:
    # confseq: bound(v=100, log(1/0.05)) = 30.35209 on the scale of the sum; / t for the mean.
    tau2 = msprt_mixing_variance(1.0, planned_n=100, alpha=0.05)
    assert float(mixture_radius(0.01, tau2, 0.05)) * 100 == pytest.approx(30.35209, abs=1e-5)


def gbstats_rho_squared(alpha: float, tuning: float) -> float:
    """gbstats `sequential_rho` squared: Waudby-Smith et al. v7 eq. 161."""
    log_inv = -math.log(alpha)
    return (2 * log_inv + math.log(2 * log_inv + 1)) / tuning


def gbstats_proportion_lift() -> tuple[float, float]:
    """gbstats' relative lift and delta-method SE for ProportionStatistic(1396, 3000) vs
    (2422, 3461) at full precision (published rounded: 0.50386, 0.03386)."""
    p_a, p_b = 1396 / 3000, 2422 / 3461
    var_a, var_b = p_a * (1 - p_a), p_b * (1 - p_b)
    se = math.sqrt(var_b / (3461 * p_a**2) + var_a * p_b**2 / (3000 * p_a**4))
    return p_b / p_a - 1, se


def arms_with(
    estimate: float, std_error: float, n_control: int, n_treatment: int
) -> tuple[SampleStats, SampleStats]:
    """Two arms whose difference of means is `estimate` and whose Welch SE is `std_error`.

    The CS depends on the data only through d, sigma_hat^2 = t v and t, so gbstats' (relative)
    estimate and SE can be fed through the public function as an absolute difference."""
    sd = std_error / math.sqrt(1 / n_control + 1 / n_treatment)
    return stats_from_moments(n_control, 0.0, sd), stats_from_moments(n_treatment, estimate, sd)


@pytest.mark.parametrize(
    ("case", "estimate", "std_error", "arms", "tuning", "expected", "tolerance"),
    [
        # test_sequential_test_runs: N* = 1000, n = 3000 + 3461.
        (
            "mean",
            0.5033610858562358,
            0.3334122146400735,
            (3000, 3461),
            1000,
            (-0.55844, 1.56516),
            1e-5,
        ),
        # test_sequential_test_runs_prop (default N* = 5000).
        ("proportion", *gbstats_proportion_lift(), (3000, 3461), 5000, (0.40098, 0.60675), 1e-5),
        # test_sequential_test_runs_ratio_ra: n = 100 + 100. Only 5-decimal inputs are
        # published (SE 0.00391 +- 5e-6 moves the ends by up to 2.5e-5); measured 1.08e-5.
        ("ratio_ra", -0.0007, 0.00391, (100, 100), 5000, (-0.02063, 0.01923), 2e-5),
    ],
)
def test_asymptotic_cs_with_approximate_rho_matches_gbstats_fixtures_end_to_end(
    case: str,
    estimate: float,
    std_error: float,
    arms: tuple[int, int],
    tuning: float,
    expected: tuple[float, float],
    tolerance: float,
) -> None:
    # Through the public function (SampleStats in, interval out) with gbstats' rho rule.
    # Measured |error|: mean 2.7e-6, proportion 1.8e-6 (the published ends are rounded to
    # 5e-6). With the default exact rho one end is off by 1.4e-3.
    control, treatment = arms_with(estimate, std_error, *arms)
    result = asymptotic_cs(control, treatment, planned_n=tuning, rho="approximate", min_n=2)
    assert result.estimate == pytest.approx(estimate, abs=1e-12)
    assert result.std_error == pytest.approx(std_error, rel=1e-9)
    assert result.ci_low == pytest.approx(expected[0], abs=tolerance), case
    assert result.ci_high == pytest.approx(expected[1], abs=tolerance), case
    # The approximate rule is gbstats' eq. 161 closed form.
    assert asymptotic_cs_rho_squared(tuning, 0.05, "approximate") == pytest.approx(
        gbstats_rho_squared(0.05, tuning), rel=1e-14
    )


@pytest.mark.parametrize("test", METHODS)
def test_estimate_and_std_error_match_gbstats_absolute_fixture(test: Test) -> None:
    # gbstats TestOneSidedGreaterTTest.test_one_sided_ttest_absolute: same arms, Welch SE.
    control = SampleStats(3000, 1396.87, 52377.9767)
    treatment = SampleStats(3461, 2422.7, 134698.29)
    result = test(control, treatment, planned_n=5000)
    assert result.estimate == pytest.approx(0.23437666666666668, abs=1e-12)
    assert result.std_error == pytest.approx(0.12983081254184736, abs=1e-12)


@pytest.mark.parametrize(
    ("deviation", "variance", "tau2"),
    [(0.0, 1.0, 1.0), (0.3, 0.01, 0.05), (-1.2, 0.04, 0.5), (2.5, 0.5, 0.01), (0.05, 1e-4, 3e-3)],
)
def test_log_likelihood_ratio_equals_the_mixture_integral(
    deviation: float, variance: float, tau2: float
) -> None:
    # Independent computation of Lambda = int N(d; theta, v) / N(d; theta_0, v) dN(theta;
    # theta_0, tau^2) by adaptive quadrature (theta_0 = 0), in place of the closed form (1).
    def integrand(theta: float) -> float:
        log_ratio = ((deviation * deviation) - (deviation - theta) ** 2) / (2 * variance)
        return math.exp(log_ratio) * stats.norm.pdf(theta, 0.0, math.sqrt(tau2))

    half_range = 40 * (math.sqrt(tau2) + abs(deviation) + math.sqrt(variance))
    value, _ = integrate.quad(
        integrand,
        -half_range,
        half_range,
        points=[0.0, deviation],
        limit=400,
        epsabs=0.0,
        epsrel=1e-11,
    )
    closed_form = float(mixture_log_likelihood_ratio(deviation, variance, tau2))
    assert closed_form == pytest.approx(math.log(value), abs=1e-8)


@pytest.mark.parametrize(("variance", "tau2", "alpha"), [(0.01, 0.08, 0.05), (2.0, 0.3, 0.01)])
def test_interval_is_where_the_likelihood_ratio_crosses_one_over_alpha(
    variance: float, tau2: float, alpha: float
) -> None:
    # Root of log Lambda(delta) = log(1/alpha) by brentq, independent of the closed form (3).
    def excess(delta: float) -> float:
        return float(mixture_log_likelihood_ratio(delta, variance, tau2)) + math.log(alpha)

    root = optimize.brentq(excess, 0.0, 100.0, xtol=1e-14)
    assert float(mixture_radius(variance, tau2, alpha)) == pytest.approx(root, rel=1e-10)


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05, 0.1, 0.3, 0.9])
def test_rho_squared_minimises_the_cs_width_at_the_planned_n(alpha: float) -> None:
    # Numerical minimisation of the margin over rho^2 at t = N* (independent of Lambert W).
    planned_n = 1234.0

    def width(log_rho2: float) -> float:
        return float(asymptotic_cs_margin(planned_n, math.exp(log_rho2), alpha))

    best = optimize.minimize_scalar(width, bracket=(-12.0, -4.0), tol=1e-12)
    assert asymptotic_cs_rho_squared(planned_n, alpha) == pytest.approx(math.exp(best.x), rel=1e-5)


def test_rho_squared_agrees_with_drconfseq_best_rho2_exact_to_a_few_parts_in_ten_thousand() -> None:
    # drconfseq (WannabeSmith/drconfseq, R/asymptotic_confseq.R) best_rho2_exact evaluates W at
    # -alpha^2 exp(alpha^2 - 1) instead of -alpha^2 / e: a 0.03% difference in rho^2 at 0.05,
    # which changes the width at N* by less than 1e-7 (the optimum is flat).
    alpha, planned_n = 0.05, 100.0
    drconfseq = (-special.lambertw(-(alpha**2) * math.exp(alpha**2 - 1), k=-1).real - 1) / planned_n
    ours = asymptotic_cs_rho_squared(planned_n, alpha)
    assert ours == pytest.approx(drconfseq, rel=5e-4)
    assert ours == pytest.approx(0.08211968, rel=1e-7)  # (-W_{-1}(-0.0025/e) - 1) / 100
    width = float(asymptotic_cs_margin(planned_n, ours, alpha))
    assert width <= float(asymptotic_cs_margin(planned_n, drconfseq, alpha)) <= width * (1 + 1e-7)


def test_msprt_mixing_variance_is_within_a_tenth_of_a_percent_of_the_narrowest_interval() -> None:
    # The closed-form tau^2 vs a numerical minimisation of the radius (3) over tau^2 at N*.
    planned_n, sigma2 = 5000.0, 3.7
    variance = sigma2 / planned_n
    best = optimize.minimize_scalar(
        lambda log_tau2: float(mixture_radius(variance, math.exp(log_tau2), ALPHA)),
        bracket=(-12.0, -4.0),
        tol=1e-12,
    )
    chosen = float(mixture_radius(variance, msprt_mixing_variance(sigma2, planned_n, ALPHA), ALPHA))
    assert best.fun <= chosen <= best.fun * 1.001


def test_cs_and_msprt_boundaries_coincide_when_tau2_is_rho2_times_sigma2() -> None:
    # Two code paths (Waudby-Smith eq. 9 / 155 vs Johari (1) / (3)) for one Gaussian mixture.
    t = np.array([10.0, 200.0, 5000.0, 1e6])
    sigma2, rho2 = 2.3, 7.9e-4
    variance = sigma2 / t
    cs_radius = math.sqrt(sigma2) * asymptotic_cs_margin(t, rho2, ALPHA)
    np.testing.assert_allclose(
        cs_radius, mixture_radius(variance, rho2 * sigma2, ALPHA), rtol=1e-12
    )
    z = np.array([0.0, 1.5, -3.0, 6.0])
    np.testing.assert_allclose(
        asymptotic_cs_log_evalue(z, t, rho2),
        mixture_log_likelihood_ratio(z * np.sqrt(variance), variance, rho2 * sigma2),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("test", METHODS)
@pytest.mark.parametrize("gap", [0.0, 0.05, 0.1, 0.15, 0.2, 0.3])
def test_reject_exactly_when_the_interval_excludes_theta_0(test: Test, gap: float) -> None:
    control = stats_from_moments(400, 1.0, 1.0)
    treatment = stats_from_moments(500, 1.0 + gap, 1.3)
    result = test(control, treatment, planned_n=900)
    excluded = not result.ci_low <= 0.0 <= result.ci_high
    assert result.reject == excluded == (result.p_value <= ALPHA)


# -- Seeded simulation studies --------------------------------------------------------------
# Each replicate is an experiment; each look adds one batch to both arms; the arrays below are
# (replicates, looks). Normal batches are drawn exactly from their sufficient statistics: a
# batch of b normals has sum ~ N(b mu, b sigma^2) and, independently, within-batch sum of
# squares ~ sigma^2 chi2(b - 1).


def normal_looks(
    rng: np.random.Generator, replicates: int, looks: int, batch: int, mean: float, sd: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative (n, sum, sum of squares) of one arm at every look."""
    sums = batch * mean + math.sqrt(batch) * sd * rng.standard_normal((replicates, looks))
    squares = sd * sd * rng.chisquare(batch - 1, (replicates, looks)) + sums * sums / batch
    n = batch * np.arange(1, looks + 1, dtype=np.float64)
    return n, np.cumsum(sums, axis=1), np.cumsum(squares, axis=1)


def binary_looks(
    rng: np.random.Generator, replicates: int, looks: int, batch: int, p: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    successes = np.cumsum(rng.binomial(batch, p, (replicates, looks)), axis=1).astype(np.float64)
    return batch * np.arange(1, looks + 1, dtype=np.float64), successes, successes


def lognormal_looks(
    rng: np.random.Generator, replicates: int, looks: int, batch: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Raw skewed data (lognormal(0, 1): skewness 6.2), cumulated at the end of each batch."""
    y = rng.lognormal(0.0, 1.0, (replicates, looks * batch))
    ends = np.arange(batch - 1, looks * batch, batch)
    n = batch * np.arange(1, looks + 1, dtype=np.float64)
    return n, np.cumsum(y, axis=1)[:, ends], np.cumsum(y * y, axis=1)[:, ends]


@dataclasses.dataclass(frozen=True)
class Paths:
    """Per replicate and look: the running mSPRT p-value, the CS, and the naive z-test p."""

    estimate: FloatArray
    msprt_p: FloatArray
    msprt_low: FloatArray
    msprt_high: FloatArray
    cs_p: FloatArray
    cs_low: FloatArray
    cs_high: FloatArray
    naive_p: FloatArray

    def ever_rejects(self, p: FloatArray) -> float:
        return float((p <= ALPHA).any(axis=1).mean())

    def ever_misses(self, low: FloatArray, high: FloatArray, truth: float) -> float:
        return float(((low > truth) | (high < truth)).any(axis=1).mean())


def monitor_paths(
    control: tuple[FloatArray, FloatArray, FloatArray],
    treatment: tuple[FloatArray, FloatArray, FloatArray],
    *,
    planned_n: float,
    theta_0: float = 0.0,
    kind: MetricKind = "continuous",
    min_n: int = DEFAULT_MIN_N,
) -> Paths:
    """Both always-valid tests and the naive test at every look, with running min/intersection.

    Looks with fewer than min_n in either arm are uninformative (p = 1, interval infinite), as
    in the public functions."""
    (n_c, sum_c, sq_c), (n_t, sum_t, sq_t) = control, treatment
    mean_c, mean_t = sum_c / n_c, sum_t / n_t
    if kind == "binary":
        var_c, var_t = mean_c * (1 - mean_c), mean_t * (1 - mean_t)
    else:
        var_c = (sq_c - sum_c * mean_c) / (n_c - 1)
        var_t = (sq_t - sum_t * mean_t) / (n_t - 1)
    d, v, t = mean_t - mean_c, var_c / n_c + var_t / n_t, n_c + n_t
    early = np.minimum(n_c, n_t) < min_n  # per look

    tau2 = msprt_mixing_variance(v * t, planned_n, ALPHA)
    msprt_p = np.exp(-np.maximum(mixture_log_likelihood_ratio(d - theta_0, v, tau2), 0.0))
    msprt_radius = mixture_radius(v, tau2, ALPHA)
    rho2 = asymptotic_cs_rho_squared(planned_n, ALPHA)
    cs_radius = np.sqrt(v * t) * asymptotic_cs_margin(t, rho2, ALPHA)
    cs_p = np.exp(-np.maximum(asymptotic_cs_log_evalue((d - theta_0) / np.sqrt(v), t, rho2), 0.0))
    msprt_p[:, early], cs_p[:, early] = 1.0, 1.0
    msprt_radius[:, early], cs_radius[:, early] = np.inf, np.inf
    return Paths(
        estimate=d,
        msprt_p=np.minimum.accumulate(msprt_p, axis=1),
        msprt_low=np.maximum.accumulate(d - msprt_radius, axis=1),
        msprt_high=np.minimum.accumulate(d + msprt_radius, axis=1),
        cs_p=np.minimum.accumulate(cs_p, axis=1),
        cs_low=np.maximum.accumulate(d - cs_radius, axis=1),
        cs_high=np.minimum.accumulate(d + cs_radius, axis=1),
        naive_p=2 * stats.norm.sf(np.abs(d - theta_0) / np.sqrt(v)),
    )


# Independent of the module: kappa = t tau^2 / (N* sigma2) = N* rho^2 for each method.
LOG_INV_ALPHA = -math.log(ALPHA)
KAPPA_MSPRT = 2 * LOG_INV_ALPHA + math.log(1 + 2 * LOG_INV_ALPHA)  # Howard et al. closed form
KAPPA_CS = -special.lambertw(-(ALPHA**2) / math.e, k=-1).real - 1  # exact width minimiser


def exact_false_positive_rate(
    total: FloatArray, smaller_arm: FloatArray, planned_n: float, kappa: float
) -> float:
    """P(some look rejects | H0) for known variances and a fixed allocation ratio.

    With r = tau^2 / v = kappa t / N*, (1) >= 1/alpha exactly when |z| >= c with
    c^2 = 2 (1 + r) / r (log(1/alpha) + log(1 + r) / 2): a deterministic two-sided z-boundary
    per look (infinite below min_n). z at the looks is a Brownian motion observed at
    information fractions t_k / t_K, so the group-sequential recursion (Jennison & Turnbull
    ch. 19) gives the exact crossing probability.
    """
    r = kappa * total / planned_n
    c = np.sqrt(2 * (1 + r) / r * (LOG_INV_ALPHA + 0.5 * np.log1p(r)))
    c[smaller_arm < DEFAULT_MIN_N] = np.inf
    crossing = boundary_crossing_probabilities(total / total[-1], c, -c)
    return crossing.rejection


def assert_matches_exact(simulated: float, exact: float, replicates: int) -> None:
    """|simulated - exact| <= 3 Monte-Carlo SE (two-sided), and the exact rate is <= alpha."""
    se = math.sqrt(exact * (1 - exact) / replicates)
    assert exact <= ALPHA
    assert abs(simulated - exact) <= 3 * se, (simulated, exact, se)


REPLICATES, LOOKS = 10_000, 50
MC_SE = math.sqrt(ALPHA * (1 - ALPHA) / REPLICATES)  # 0.0022 at a true rate of alpha
# The A/A studies compare with the exact rate of the schedule (0.0132 mSPRT, 0.0135 CS; SE
# 0.0011 at 10,000 replicates): a bug that moves the rate by ~0.0035 or more fails. Measured on
# the normal study with deliberate bugs in the mSPRT: doubled alpha 0.0310 (+16 SE), without
# the sqrt(v/(v + tau^2)) factor 0.0393 (+23 SE), kappa 10x too small 0.0 (-12 SE); all three
# passed the old one-sided bound 0.0646. A correct procedure fails one two-sided
# 3-SE check with probability 0.0027 (normal approximation).


def test_a_a_normal_monitored_every_batch_matches_the_exact_false_positive_rate() -> None:
    # 10,000 A/A experiments, 50 looks of 40 per arm (N* = 4,000 = the final total).
    # Measured: mSPRT 0.0139, CS 0.0140 (exact 0.0132 / 0.0135 for known variances); the CS
    # misses 0 in 0.0140; naive 0.323 (the bound 0.2 is 26 SE below its rate).
    rng = np.random.default_rng(20240601)
    control = normal_looks(rng, REPLICATES, LOOKS, 40, 1.0, 2.0)
    treatment = normal_looks(rng, REPLICATES, LOOKS, 40, 1.0, 2.0)
    paths = monitor_paths(control, treatment, planned_n=4000)
    total, smaller = control[0] + treatment[0], np.minimum(control[0], treatment[0])
    exact_msprt = exact_false_positive_rate(total, smaller, 4000, KAPPA_MSPRT)
    exact_cs = exact_false_positive_rate(total, smaller, 4000, KAPPA_CS)
    assert_matches_exact(paths.ever_rejects(paths.msprt_p), exact_msprt, REPLICATES)
    assert_matches_exact(paths.ever_rejects(paths.cs_p), exact_cs, REPLICATES)
    assert_matches_exact(paths.ever_misses(paths.cs_low, paths.cs_high, 0.0), exact_cs, REPLICATES)
    assert paths.ever_rejects(paths.naive_p) >= 0.2
    # The naive test is fine at one pre-planned look (0.05 +- 3 SE) - peeking is the problem.
    assert abs(float((paths.naive_p[:, -1] <= ALPHA).mean()) - ALPHA) <= 3 * MC_SE


def test_a_a_binary_with_plug_in_variance_matches_the_exact_false_positive_rate() -> None:
    # Conversion rate 10%, 50 looks of 100 per arm, kind="binary" (p(1 - p) plug-in).
    # Measured: mSPRT 0.0136, CS 0.0139 (exact 0.0132 / 0.0135); naive 0.322.
    rng = np.random.default_rng(7)
    control = binary_looks(rng, REPLICATES, LOOKS, 100, 0.1)
    treatment = binary_looks(rng, REPLICATES, LOOKS, 100, 0.1)
    paths = monitor_paths(control, treatment, planned_n=10_000, kind="binary")
    total, smaller = control[0] + treatment[0], np.minimum(control[0], treatment[0])
    exact_msprt = exact_false_positive_rate(total, smaller, 10_000, KAPPA_MSPRT)
    exact_cs = exact_false_positive_rate(total, smaller, 10_000, KAPPA_CS)
    assert_matches_exact(paths.ever_rejects(paths.msprt_p), exact_msprt, REPLICATES)
    assert_matches_exact(paths.ever_rejects(paths.cs_p), exact_cs, REPLICATES)
    assert paths.ever_rejects(paths.naive_p) >= 0.2


def test_a_a_skewed_data_keeps_false_positives_below_alpha() -> None:
    # Lognormal rewards (raw draws), 4,000 experiments, 50 looks of 20 per arm (the first look
    # is below min_n): the AsympCS is only asymptotically valid, so this checks the bound
    # alpha + 3 SE (0.0603), not the normal-theory exact rate. Measured: 0.0085 for both (exact
    # normal-theory rate 0.0132: skewness makes this schedule conservative); naive 0.316.
    rng = np.random.default_rng(11)
    replicates = 4000
    control = lognormal_looks(rng, replicates, LOOKS, 20)
    treatment = lognormal_looks(rng, replicates, LOOKS, 20)
    paths = monitor_paths(control, treatment, planned_n=2000)
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / replicates)
    assert paths.ever_rejects(paths.msprt_p) <= bound
    assert paths.ever_rejects(paths.cs_p) <= bound
    assert paths.ever_rejects(paths.naive_p) >= 0.2


def test_cs_covers_the_true_difference_at_every_look_with_unequal_arms() -> None:
    # Real effect 0.1, control N(1, 1) 60 per look, treatment N(1.1, 3^2) 20 per look (unequal
    # allocation and variance, but a fixed ratio). Coverage is uniform: a replicate fails if
    # any look misses. The first look (20 treatment) is below min_n. Measured misses: CS 0.0148,
    # mSPRT 0.0146 (exact 0.0135 / 0.0132); naive at theta_0 = 0.1: 0.347.
    rng = np.random.default_rng(3)
    control = normal_looks(rng, REPLICATES, LOOKS, 60, 1.0, 1.0)
    treatment = normal_looks(rng, REPLICATES, LOOKS, 20, 1.1, 3.0)
    paths = monitor_paths(control, treatment, planned_n=4000, theta_0=0.1)
    total, smaller = control[0] + treatment[0], np.minimum(control[0], treatment[0])
    exact_msprt = exact_false_positive_rate(total, smaller, 4000, KAPPA_MSPRT)
    exact_cs = exact_false_positive_rate(total, smaller, 4000, KAPPA_CS)
    assert_matches_exact(paths.ever_misses(paths.cs_low, paths.cs_high, 0.1), exact_cs, REPLICATES)
    assert_matches_exact(
        paths.ever_misses(paths.msprt_low, paths.msprt_high, 0.1), exact_msprt, REPLICATES
    )
    assert_matches_exact(paths.ever_rejects(paths.cs_p), exact_cs, REPLICATES)
    assert paths.ever_rejects(paths.naive_p) >= 0.2


def test_small_samples_keep_false_positives_below_alpha_with_the_default_min_n() -> None:
    # The reviewer's case: normal A/A, a look every 2 observations per arm up to 200 per arm,
    # N* = 20, 20,000 experiments. Without a minimum (min_n = 2) the rate is about 0.12 (the
    # t-like tails of d / sqrt(v) with 1-3 degrees of freedom); with the default 30 it is
    # about 0.014. Bound alpha + 3 SE = 0.0546. Measured: min_n 2: 0.119; 10: 0.028; 30:
    # mSPRT 0.0147, CS 0.0143.
    rng = np.random.default_rng(2718)
    replicates = 20_000
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / replicates)
    control = normal_looks(rng, replicates, 100, 2, 0.0, 1.0)
    treatment = normal_looks(rng, replicates, 100, 2, 0.0, 1.0)
    paths = monitor_paths(control, treatment, planned_n=20)
    assert paths.ever_rejects(paths.msprt_p) <= bound
    assert paths.ever_rejects(paths.cs_p) <= bound
    unprotected = monitor_paths(control, treatment, planned_n=20, min_n=2)
    assert unprotected.ever_rejects(unprotected.msprt_p) > 2 * ALPHA  # what the default prevents


def test_both_tests_eventually_detect_a_real_effect() -> None:
    # Effect 0.3 with sd 2 (0.15 sd), 50 looks of 40 per arm; a fixed-horizon z-test at the
    # end has power 0.997. Measured over 500 experiments: both reject in 0.974 by the last look
    # (SE 0.007; the 0.9 bound is 10 SE below), and the median first rejection is at look 19
    # of 50. (At effect 0.25 it is 0.846 against 0.977 fixed-horizon: the price of peeking.)
    rng = np.random.default_rng(5)
    control = normal_looks(rng, 500, LOOKS, 40, 1.0, 2.0)
    treatment = normal_looks(rng, 500, LOOKS, 40, 1.3, 2.0)
    paths = monitor_paths(control, treatment, planned_n=4000)
    for p in (paths.msprt_p, paths.cs_p):
        assert paths.ever_rejects(p) >= 0.9
        first = np.argmax(p <= ALPHA, axis=1)[(p <= ALPHA).any(axis=1)]
        assert np.median(first) < 30


@pytest.mark.parametrize("method", ["msprt", "asymptotic_cs"])
def test_monitor_on_sample_stats_reproduces_the_vectorised_paths(method: str) -> None:
    # The simulation uses the vectorised primitives; the service uses SampleStats and the
    # monitor. Both must give the same numbers, look by look.
    rng = np.random.default_rng(99)
    control = normal_looks(rng, 3, 20, 30, 0.0, 1.0)
    treatment = normal_looks(rng, 3, 20, 30, 0.1, 1.5)
    paths = monitor_paths(control, treatment, planned_n=1200)
    p, low, high = (
        (paths.msprt_p, paths.msprt_low, paths.msprt_high)
        if method == "msprt"
        else (paths.cs_p, paths.cs_low, paths.cs_high)
    )
    for replicate in range(3):
        monitor = SequentialMonitor(method=method, planned_n=1200)  # type: ignore[arg-type]
        for look in range(20):
            result = monitor.update(
                SampleStats(
                    int(control[0][look]), control[1][replicate, look], control[2][replicate, look]
                ),
                SampleStats(
                    int(treatment[0][look]),
                    treatment[1][replicate, look],
                    treatment[2][replicate, look],
                ),
            )
            assert result.p_value == pytest.approx(p[replicate, look], rel=1e-9)
            assert result.ci_low == pytest.approx(low[replicate, look], rel=1e-9, abs=1e-12)
            assert result.ci_high == pytest.approx(high[replicate, look], rel=1e-9, abs=1e-12)


# -- Properties -------------------------------------------------------------------------------

arms = st.tuples(
    st.integers(2, 1_000_000),
    st.floats(-100, 100),
    st.floats(0.1, 100),
)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(control=arms, treatment=arms, test=st.sampled_from(METHODS))
def test_swapping_arms_negates_estimate_and_interval_and_keeps_p_value(
    control: tuple[int, float, float], treatment: tuple[int, float, float], test: Test
) -> None:
    a, b = stats_from_moments(*control), stats_from_moments(*treatment)
    forward = test(a, b, planned_n=5000, min_n=2)
    backward = test(b, a, planned_n=5000, min_n=2)
    assert backward.estimate == pytest.approx(-forward.estimate, rel=1e-9, abs=1e-9)
    assert backward.ci_low == pytest.approx(-forward.ci_high, rel=1e-9, abs=1e-9)
    assert backward.ci_high == pytest.approx(-forward.ci_low, rel=1e-9, abs=1e-9)
    assert backward.p_value == pytest.approx(forward.p_value, rel=1e-9, abs=1e-300)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    control=arms,
    treatment=arms,
    shift=st.floats(-50, 50),
    scale=st.floats(0.01, 100),
    test=st.sampled_from(METHODS),
)
def test_shifting_both_arms_changes_nothing_and_scaling_scales_the_interval(
    control: tuple[int, float, float],
    treatment: tuple[int, float, float],
    shift: float,
    scale: float,
    test: Test,
) -> None:
    base = test(
        stats_from_moments(*control), stats_from_moments(*treatment), planned_n=3000, min_n=2
    )

    def transformed(arm: tuple[int, float, float]) -> SampleStats:
        n, mean, sd = arm
        return stats_from_moments(n, scale * mean + shift, scale * sd)

    moved = test(transformed(control), transformed(treatment), planned_n=3000, min_n=2)
    # Rounding through sum(y^2) - n mean^2 limits agreement to ~1e-9 relative here.
    width = base.ci_high - base.ci_low
    assert moved.estimate == pytest.approx(scale * base.estimate, abs=1e-6 * scale * width)
    assert moved.ci_low == pytest.approx(scale * base.ci_low, abs=1e-6 * scale * width)
    assert moved.ci_high == pytest.approx(scale * base.ci_high, abs=1e-6 * scale * width)
    assert moved.p_value == pytest.approx(base.p_value, rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("method", ["msprt", "asymptotic_cs"])
def test_running_p_value_never_rises_and_intervals_only_shrink(method: str) -> None:
    rng = np.random.default_rng(1)
    monitor = SequentialMonitor(method=method, planned_n=4000)  # type: ignore[arg-type]
    control, treatment = SampleStats(0, 0.0, 0.0), SampleStats(0, 0.0, 0.0)
    results: list[SequentialResult] = []
    for _ in range(30):
        control = control + SampleStats.from_values(rng.normal(0.0, 1.0, 50))
        treatment = treatment + SampleStats.from_values(rng.normal(0.05, 1.0, 50))
        results.append(monitor.update(control, treatment))
    assert monitor.result is results[-1]
    for before, after in itertools.pairwise(results):
        assert after.p_value <= before.p_value
        assert before.ci_low <= after.ci_low <= after.ci_high <= before.ci_high


def test_monitor_equals_chaining_previous_results_and_running_false_reports_each_look() -> None:
    rng = np.random.default_rng(2)
    looks = []
    control, treatment = SampleStats(0, 0.0, 0.0), SampleStats(0, 0.0, 0.0)
    for _ in range(10):
        control = control + SampleStats.from_values(rng.normal(0.0, 1.0, 40))
        treatment = treatment + SampleStats.from_values(rng.normal(0.0, 1.0, 40))
        looks.append((control, treatment))
    running = SequentialMonitor(method="asymptotic_cs", planned_n=800)
    single = SequentialMonitor(method="asymptotic_cs", planned_n=800, running=False)
    previous = None
    for c, t in looks:
        previous = asymptotic_cs(c, t, planned_n=800, previous=previous)
        assert running.update(c, t) == previous
        assert single.update(c, t) == asymptotic_cs(c, t, planned_n=800)


def test_one_call_keeps_the_smaller_previous_p_value_and_the_narrower_interval() -> None:
    control = stats_from_moments(1000, 0.0, 1.0)
    treatment = stats_from_moments(1000, 0.05, 1.0)
    now = msprt(control, treatment, planned_n=4000)
    earlier = dataclasses.replace(
        now,
        p_value=0.001,
        ci_low=now.ci_low + 0.01,
        ci_high=now.ci_high - 0.02,
        n_control=500,
        n_treatment=500,
    )
    result = msprt(control, treatment, planned_n=4000, previous=earlier)
    assert result.p_value == 0.001
    assert result.reject
    assert (result.ci_low, result.ci_high) == (earlier.ci_low, earlier.ci_high)


@pytest.mark.parametrize("test", METHODS)
def test_an_empty_intersection_is_reported_as_a_failed_sequence_that_rejects(test: Test) -> None:
    # An earlier look excluded 0 (its interval [0.3, 0.4]) and this look's interval contains 0
    # and misses [0.3, 0.4]. The old code reported this look's interval and forgot the history,
    # so reject could be True with theta_0 inside the interval.
    control = stats_from_moments(1000, 0.0, 1.0)
    treatment = stats_from_moments(1000, 0.01, 1.0)
    now = test(control, treatment, planned_n=4000)
    assert now.ci_low < 0.0 < now.ci_high < 0.3
    earlier = dataclasses.replace(
        now, ci_low=0.3, ci_high=0.4, p_value=0.01, reject=True, n_control=500, n_treatment=500
    )
    result = test(control, treatment, planned_n=4000, previous=earlier)
    assert result.sequence_failed
    assert result.ci_low > result.ci_high  # the empty set, kept, not replaced
    assert result.reject
    assert not result.ci_low <= 0.0 <= result.ci_high  # consistent with reject
    # Once failed, always failed (the intersection cannot grow back).
    later = test(
        stats_from_moments(2000, 0.0, 1.0),
        stats_from_moments(2000, 0.01, 1.0),
        planned_n=4000,
        previous=result,
    )
    assert later.sequence_failed
    assert later.reject
    assert later.ci_low > later.ci_high
    assert not now.sequence_failed


@pytest.mark.parametrize("test", METHODS)
def test_sequence_failed_agrees_with_the_running_paths_in_simulation(test: Test) -> None:
    # Every replicate whose vectorised running interval became empty is flagged by the public
    # function, and its reject is True; no replicate rejects with theta_0 inside its interval.
    rng = np.random.default_rng(8)
    control = normal_looks(rng, 400, 20, 40, 0.0, 1.0)
    treatment = normal_looks(rng, 400, 20, 40, 0.0, 1.0)
    failures = 0
    for replicate in range(400):
        previous = None
        for look in range(20):
            previous = test(
                SampleStats(
                    40 * (look + 1), control[1][replicate, look], control[2][replicate, look]
                ),
                SampleStats(
                    40 * (look + 1), treatment[1][replicate, look], treatment[2][replicate, look]
                ),
                planned_n=200,
                previous=previous,
            )
            inside = previous.ci_low <= 0.0 <= previous.ci_high
            assert not (previous.reject and inside)
            assert previous.sequence_failed == (previous.ci_low > previous.ci_high)
        failures += previous.sequence_failed
    assert failures > 0  # the study does reach the empty state


def test_binary_uses_the_plug_in_variance() -> None:
    control, treatment = SampleStats.from_binary(2000, 200), SampleStats.from_binary(2100, 252)
    result = msprt(control, treatment, planned_n=8000, kind="binary")
    expected = math.sqrt(0.1 * 0.9 / 2000 + 0.12 * 0.88 / 2100)
    assert result.std_error == pytest.approx(expected, rel=1e-12)
    assert result.estimate == pytest.approx(0.02, abs=1e-15)


def test_monitor_passes_the_metric_kind_on() -> None:
    control, treatment = SampleStats.from_binary(2000, 200), SampleStats.from_binary(2100, 252)
    for method in METHODS:
        monitor = SequentialMonitor(method=method.__name__, planned_n=8000, kind="binary")  # type: ignore[arg-type]
        assert monitor.kind == "binary"
        direct = method(control, treatment, planned_n=8000, kind="binary")
        assert monitor.update(control, treatment) == direct
    with pytest.raises(StatsInputError, match="kind must be 'continuous' or 'binary'"):
        SequentialMonitor(planned_n=8000, kind="count")  # type: ignore[arg-type]


def test_one_arm_with_zero_variance_is_fine() -> None:
    # Only both arms constant leaves nothing to test: one constant arm still has a variance.
    result = asymptotic_cs(
        SampleStats.from_binary(500, 0), stats_from_moments(500, 0.1, 1.0), planned_n=2000
    )
    assert result.std_error == pytest.approx(math.sqrt(1.0 / 500))
    assert 0.0 < result.p_value <= 1.0


def test_overwhelming_evidence_gives_p_value_zero_not_nan() -> None:
    result = msprt(
        stats_from_moments(10**6, 0.0, 1.0), stats_from_moments(10**6, 5.0, 1.0), planned_n=1000
    )
    assert result.p_value == 0.0
    assert result.reject


# -- Input errors -------------------------------------------------------------------------------

GOOD = stats_from_moments(100, 1.0, 1.0)


@pytest.mark.parametrize("test", METHODS)
@pytest.mark.parametrize(
    ("control", "treatment", "kwargs", "message"),
    [
        (
            SampleStats.from_values([3.0] * 35),
            SampleStats.from_values([4.0] * 39),
            {},
            "both arms have zero variance",
        ),
        (
            SampleStats.from_binary(50, 0),
            SampleStats.from_binary(60, 0),
            {"kind": "binary"},
            "both arms have zero variance",
        ),
        (GOOD, GOOD, {"kind": "binary"}, r"the control arm is not a binary metric"),
        (  # refused below min_n as well: wrong data is not "too early"
            SampleStats(5, 5.0, 7.0),
            SampleStats.from_binary(5, 1),
            {"kind": "binary"},
            r"the control arm is not a binary metric",
        ),
        (GOOD, GOOD, {"min_n": 1}, r"min_n must be an integer >= 2"),
        (GOOD, GOOD, {"min_n": 30.5}, r"min_n must be an integer >= 2"),
        (GOOD, GOOD, {"min_n": True}, r"min_n must be an integer >= 2"),
        (GOOD, GOOD, {"alpha": 0.0}, r"alpha must be in \(0, 1\), got 0.0"),
        (GOOD, GOOD, {"alpha": 1.0}, r"alpha must be in \(0, 1\), got 1.0"),
        (GOOD, GOOD, {"alpha": -0.1}, r"alpha must be in \(0, 1\)"),
        (GOOD, GOOD, {"alpha": math.nan}, r"alpha must be in \(0, 1\), got nan"),
        (GOOD, GOOD, {"planned_n": 0}, "planned_n must be a positive, finite total sample size"),
        (GOOD, GOOD, {"planned_n": -100}, "planned_n must be a positive"),
        (GOOD, GOOD, {"planned_n": math.inf}, "planned_n must be a positive"),
        (GOOD, GOOD, {"theta_0": math.nan}, "theta_0 must be a finite number"),
        (GOOD, GOOD, {"kind": "count"}, "kind must be 'continuous' or 'binary', got 'count'"),
        (
            SampleStats.from_binary(100, 10),
            GOOD,
            {"kind": "binary"},
            r"the treatment arm is not a binary metric",
        ),
    ],
)
def test_bad_inputs_raise_stats_input_error(
    test: Test,
    control: SampleStats,
    treatment: SampleStats,
    kwargs: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(StatsInputError, match=message):
        test(control, treatment, **{"planned_n": 1000, **kwargs})


@pytest.mark.parametrize("test", METHODS)
@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        (SampleStats(0, 0.0, 0.0), GOOD),
        (GOOD, SampleStats(1, 2.0, 4.0)),
        (stats_from_moments(29, 0.0, 1.0), stats_from_moments(500, 5.0, 1.0)),
        (SampleStats.from_values([3.0] * 5), SampleStats.from_values([4.0] * 9)),
    ],
)
def test_looks_below_min_n_are_uninformative_not_errors(
    test: Test, control: SampleStats, treatment: SampleStats
) -> None:
    result = test(control, treatment, planned_n=1000)
    assert (result.p_value, result.reject, result.sequence_failed) == (1.0, False, False)
    assert (result.ci_low, result.ci_high) == (-math.inf, math.inf)
    assert result.min_n == DEFAULT_MIN_N == 30
    # With both arms at min_n the (huge) difference of the third case is detected at once.
    if control.n == 29:
        grown = test(stats_from_moments(30, 0.0, 1.0), treatment, planned_n=1000)
        assert grown.reject
        assert grown.ci_low > 4.0
        assert test(control, treatment, planned_n=1000, min_n=2).reject


def test_previous_result_from_another_design_is_refused() -> None:
    previous = msprt(GOOD, GOOD, planned_n=1000)
    with pytest.raises(StatsInputError, match="previous result comes from another design"):
        asymptotic_cs(GOOD, GOOD, planned_n=1000, previous=previous)
    with pytest.raises(StatsInputError, match="previous result comes from another design"):
        msprt(GOOD, GOOD, planned_n=1000, alpha=0.1, previous=previous)
    with pytest.raises(StatsInputError, match="previous result comes from another design"):
        msprt(GOOD, GOOD, planned_n=1000, min_n=50, previous=previous)
    cs = asymptotic_cs(GOOD, GOOD, planned_n=1000)
    with pytest.raises(StatsInputError, match="previous result comes from another design"):
        asymptotic_cs(GOOD, GOOD, planned_n=1000, rho="approximate", previous=cs)


def test_looks_that_lose_observations_are_refused() -> None:
    monitor = SequentialMonitor(planned_n=1000)
    monitor.update(GOOD, GOOD)
    with pytest.raises(StatsInputError, match=r"looks must be cumulative.*treatment=50"):
        monitor.update(GOOD, stats_from_moments(50, 1.0, 1.0))


def test_monitor_refuses_an_unknown_method_and_a_bad_design_up_front() -> None:
    with pytest.raises(StatsInputError, match="method must be 'msprt' or 'asymptotic_cs'"):
        SequentialMonitor(method="bayes", planned_n=100)  # type: ignore[arg-type]
    with pytest.raises(StatsInputError, match="planned_n must be a positive"):
        SequentialMonitor(planned_n=0)
    with pytest.raises(StatsInputError, match="rho must be 'exact' or 'approximate'"):
        SequentialMonitor(method="asymptotic_cs", planned_n=100, rho="gbstats")  # type: ignore[arg-type]
    with pytest.raises(StatsInputError, match="min_n must be an integer >= 2"):
        SequentialMonitor(planned_n=100, min_n=0)
    monitor = SequentialMonitor(method="asymptotic_cs", planned_n=100, rho="approximate", min_n=5)
    result = monitor.update(GOOD, GOOD)
    assert (result.rho, result.min_n) == ("approximate", 5)
    assert result == asymptotic_cs(GOOD, GOOD, planned_n=100, rho="approximate", min_n=5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mixture_radius(0.0, 1.0, ALPHA), "variance must be positive"),
        (lambda: mixture_radius(1.0, -1.0, ALPHA), "mixing_variance must be positive"),
        (lambda: mixture_log_likelihood_ratio(math.nan, 1.0, 1.0), "deviation must be finite"),
        (lambda: asymptotic_cs_margin(10, 0.0, ALPHA), "rho_squared must be a positive"),
        (lambda: asymptotic_cs_margin(0, 0.1, ALPHA), "n must be positive"),
        (lambda: asymptotic_cs_rho_squared(100, 1.5), r"alpha must be in \(0, 1\)"),
        (lambda: asymptotic_cs_rho_squared(100, 0.05, "x"), "rho must be 'exact' or"),  # type: ignore[arg-type]
        (lambda: msprt_mixing_variance(1.0, -1, ALPHA), "planned_n must be a positive"),
    ],
)
def test_primitives_raise_instead_of_returning_nan(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(StatsInputError, match=message):
        call()
