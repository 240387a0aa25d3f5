"""Always-valid inference for a difference in means: the mSPRT and asymptotic confidence sequences.

Analysts read Croupier's reports while data arrives and act on what they see. A fixed-horizon
p-value read at every look rejects a true null far more often than alpha (about 30% of A/A tests
at alpha = 0.05 over 50 looks); the two methods here keep P(ever reject a true null) <= alpha
and P(the interval ever misses the truth) <= alpha, over all looks at once, so any look may be
the last. Both take the cumulative `SampleStats` of each arm, as the service aggregates them in SQL.

Notation (treatment minus control). At a look with n_c, n_t observations:

    d = mean_t - mean_c                       the estimate
    v = s_t^2 / n_t + s_c^2 / n_c             its variance (Welch); s^2 = p(1 - p) if kind="binary"
    t = n_c + n_t                             time, counted in observations of either arm
    sigma2 = v * t                            variance per observation (the planning scale)

**mSPRT** (Johari, Pekelis & Walsh, "Always valid inference: continuous monitoring of A/B
tests", Operations Research 2022, arXiv:1512.04922; the normal-mixture SPRT of Robbins 1970).
The likelihood ratio of N(theta, v) against N(theta_0, v) for the observed d, mixed over
theta ~ N(theta_0, tau^2), is

    Lambda = sqrt(v / (v + tau^2)) * exp( tau^2 (d - theta_0)^2 / (2 v (v + tau^2)) )      (1)

which is their two-sample closed form sqrt(V/(V + n tau^2)) exp(n^2 tau^2 (d - theta_0)^2 /
(2V(V + n tau^2))) with V/n (n pairs, V = sigma_A^2 + sigma_B^2) replaced by the variance v of
the difference of means, so unequal arms are allowed. The variances are plug-in estimates:
p(1 - p) per arm for Bernoulli data, as in the paper, and the unbiased sample variance for
continuous data (exact validity needs known variances; with estimates it is asymptotic). Then

    p_n = min(p_{n-1}, 1 / Lambda_n)                                                       (2)
    CI_n = CI_{n-1} intersected with { theta_0 : Lambda_n(theta_0) < 1/alpha }
         = d +- sqrt( 2 v (v + tau^2) / tau^2 * log( sqrt((v + tau^2) / v) / alpha ) )     (3)

(3) is (1) solved for theta_0. tau^2 comes from the planned total sample size N*: the mixture
that makes (3) narrowest at t = N* is tau^2 = sigma2 * kappa / N* with kappa = -W_{-1}(-alpha^2/e)
- 1; we use the closed-form kappa ~ 2 log(1/alpha) + log(1 + 2 log(1/alpha)) of Howard, Ramdas,
McAuliffe & Sekhon (2021, Ann. Statist. 49(2), two-sided normal mixture), which is what
confseq's `TwoSidedNormalMixture::best_rho` computes (its unit tests are this module's reference
values). Because sigma2 is the current plug-in estimate, tau^2 is a fixed mixture over the
*standardised* effect (theta - theta_0) / sigma, which makes the test scale-invariant.

**Asymptotic confidence sequence** (Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences", Ann. Statist. 2024,
arXiv:2103.06476; equation numbers below are those of arXiv v7, as gbstats cites them):

    d +- sigma_hat * sqrt( 2 (t rho^2 + 1) / (t^2 rho^2) * log( sqrt(t rho^2 + 1) / alpha ) )
                                                                                  (v7 eq. 9)

with sigma_hat^2 = sigma2 = t * v for the difference of two means (the same reduction gbstats
uses). rho^2 = kappa / N* with the exact width minimiser kappa = -W_{-1}(-alpha^2/e) - 1
(derivation at `asymptotic_cs_rho_squared`; v7 eq. 161 is the closed-form approximation used
above for the mSPRT). Its e-value (v7 eq. 155) gives the p-value; the CS excludes theta_0
exactly when that p-value is <= alpha.

The two boundaries are the same Gaussian-mixture boundary: (3) with tau^2 = rho^2 * sigma2 is
the CS above, term for term. They differ in tuning (closed-form vs exact kappa; `rho=
"approximate"` gives the CS the closed form, as gbstats does) and in what is guaranteed. The
mSPRT's bound is exact only for normal data with known variances *and a fixed allocation
ratio* n_t / n_c: tau^2 = sigma2 * kappa / N* depends on the variances and on the ratio through
sigma2 = t * v, so if the ratio (or a variance) changes between looks the mixture changes with
it, the running 1/Lambda is no longer one martingale, and the bound is approximate. With
plug-in variances it is approximate as well. The CS's guarantee is asymptotic (i.i.d. data with
finite variance, as t grows) and needs no normality.

**Minimum sample size.** Both guarantees are large-sample for estimated variances: with 2 per
arm the studentised difference has t-like tails and a look may reject far too easily (normal
A/A, a look every 2 per arm, N* = 20: false-positive rate 0.12 instead of <= 0.05). A look may
only reject once both arms have `min_n` observations (default `DEFAULT_MIN_N` = 30; the same
study gives 0.014, docs/statistics/sequential.md has the table); before that the result is
uninformative: p_value 1 and the interval (-inf, inf).

**Failed sequence.** With a running state, if the intersection of the intervals is empty then
every theta has been excluded at some look: the sequence has failed (an event of probability
<= alpha under the model). The result then says so (`sequence_failed`), keeps the empty
intersection (ci_low > ci_high) and rejects, rather than forgetting the history.
docs/statistics/sequential.md explains the choice and the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from app.stats.common import MetricKind, check_alpha, check_binary, check_kind, mean_variance
from app.stats.sufficient import SampleStats, StatsInputError

FloatArray = npt.NDArray[np.float64]
Method = Literal["msprt", "asymptotic_cs"]
RhoRule = Literal["exact", "approximate"]

DEFAULT_MIN_N = 30
"""Observations per arm before a look may reject (see the module docstring and the docs)."""


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """One look of an always-valid test of treatment - control against theta_0.

    `p_value <= alpha` (equivalently `reject`) is a valid decision at this look whatever the
    looks before it, and so is reading `[ci_low, ci_high]` as a 1 - alpha interval: the
    guarantee holds simultaneously over every look. With a running state (`previous`, or a
    `SequentialMonitor`), p_value is the minimum so far and the interval the intersection so far.
    """

    method: Method
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    reject: bool
    alpha: float
    theta_0: float
    planned_n: float
    std_error: float
    n_control: int
    n_treatment: int
    min_n: int = DEFAULT_MIN_N
    """Per-arm size below which a look is uninformative (p_value 1, interval (-inf, inf))."""
    rho: RhoRule = "exact"
    """The rho^2 rule of the asymptotic CS (also recorded, unused, for the mSPRT)."""
    sequence_failed: bool = False
    """The running intersection of intervals is empty: every value, theta_0 included, has
    been excluded at some look. Then ci_low > ci_high (the empty set) and reject is True."""


# ----------------------------------------------------------------------------------------
# Vectorised primitives (numpy arrays in, arrays out): the simulation studies and a report
# over many arms/metrics call these directly.
# ----------------------------------------------------------------------------------------


def msprt_mixing_variance(
    unit_variance: npt.ArrayLike, planned_n: float, alpha: float
) -> FloatArray:
    """tau^2 for the mSPRT so that its interval (3) is (nearly) narrowest at t = planned_n.

    tau^2 = sigma2 * (2 log(1/alpha) + log(1 + 2 log(1/alpha))) / N*. In confseq's units
    (intrinsic time V = t * sigma2, mixture precision rho over lambda = theta / sigma2) this is
    rho = V* / (2 log(1/alpha) + log(1 + 2 log(1/alpha))), Howard et al. (2021)'s choice for
    the two-sided normal mixture (confseq `TwoSidedNormalMixture::best_rho`).

    Args:
        unit_variance: sigma2, the variance per observation (t * variance of the estimate).
        planned_n: N*, the planned total sample size over both arms.
        alpha: the significance level the test is run at.
    """
    check_alpha(alpha)
    _check_planned_n(planned_n)
    sigma2 = _positive_array(unit_variance, "unit_variance")
    log_inv_alpha = -math.log(alpha)
    kappa = 2.0 * log_inv_alpha + math.log1p(2.0 * log_inv_alpha)
    return sigma2 * kappa / planned_n


def mixture_log_likelihood_ratio(
    deviation: npt.ArrayLike, variance: npt.ArrayLike, mixing_variance: npt.ArrayLike
) -> FloatArray:
    """log Lambda of (1): the normal-mixture likelihood ratio of the mSPRT.

    Args:
        deviation: d - theta_0.
        variance: v, the variance of the estimate d.
        mixing_variance: tau^2, the variance of the normal mixture over theta.
    """
    dev = _finite_array(deviation, "deviation")
    v = _positive_array(variance, "variance")
    tau2 = _positive_array(mixing_variance, "mixing_variance")
    # Johari et al. (2022), normal-data mSPRT, with V/n -> v (module docstring, eq. 1).
    return 0.5 * np.log(v / (v + tau2)) + tau2 * dev * dev / (2.0 * v * (v + tau2))


def mixture_radius(
    variance: npt.ArrayLike, mixing_variance: npt.ArrayLike, alpha: float
) -> FloatArray:
    """Half-width of the mSPRT's always-valid interval (3): {theta_0 : Lambda < 1/alpha}."""
    check_alpha(alpha)
    v = _positive_array(variance, "variance")
    tau2 = _positive_array(mixing_variance, "mixing_variance")
    # Solve (1) = log(1/alpha) for (d - theta_0)^2 (module docstring, eq. 3).
    log_term = 0.5 * np.log1p(tau2 / v) - math.log(alpha)
    return np.sqrt(2.0 * v * (v + tau2) / tau2 * log_term)


def asymptotic_cs_rho_squared(planned_n: float, alpha: float, rule: RhoRule = "exact") -> float:
    """rho^2 that makes the AsympCS narrowest at t = planned_n (Waudby-Smith et al. 2024).

    rule="exact" (default) is the Lambert-W minimiser below; rule="approximate" is v7 eq. 161,
    rho^2 = (2 log(1/alpha) + log(1 + 2 log(1/alpha))) / N*, the closed form gbstats uses.

    With x = t rho^2 + 1 the squared margin at t is x log(x / alpha^2) / (t (x - 1)); setting
    its derivative in x to zero gives x - log x = 1 - 2 log(alpha), i.e. x e^{-x} = alpha^2 / e,
    whose root above 1 is x = -W_{-1}(-alpha^2 / e). Hence rho^2 = (x - 1) / N*.
    (v7 eq. 161's rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / N* is one fixed-point step of
    the same equation; drconfseq's `best_rho2_exact` uses -alpha^2 exp(alpha^2 - 1) inside W,
    which moves rho^2 by 0.03% at alpha = 0.05 and the width at N* by less than 1e-7.)
    """
    check_alpha(alpha)
    _check_planned_n(planned_n)
    _check_rho(rule)
    if rule == "approximate":
        log_inv_alpha = -math.log(alpha)
        return (2.0 * log_inv_alpha + math.log1p(2.0 * log_inv_alpha)) / planned_n
    x = -float(special.lambertw(-alpha * alpha / math.e, k=-1).real)
    return (x - 1.0) / planned_n


def asymptotic_cs_margin(n: npt.ArrayLike, rho_squared: float, alpha: float) -> FloatArray:
    """The AsympCS half-width for unit variance (v7 eq. 9 divided by sigma_hat).

    sqrt( 2 (t rho^2 + 1) / (t^2 rho^2) * log( sqrt(t rho^2 + 1) / alpha ) ); drconfseq calls
    it `std_conjmix_margin`. Multiply by sigma_hat (per-observation standard deviation).
    """
    check_alpha(alpha)
    t = _positive_array(n, "n")
    if not (math.isfinite(rho_squared) and rho_squared > 0):
        raise StatsInputError(f"rho_squared must be a positive number, got {rho_squared}")
    t_rho2 = t * rho_squared
    log_term = 0.5 * np.log1p(t_rho2) - math.log(alpha)
    return np.sqrt(2.0 * (t_rho2 + 1.0) / (t * t_rho2) * log_term)


def asymptotic_cs_log_evalue(
    z_score: npt.ArrayLike, n: npt.ArrayLike, rho_squared: float
) -> FloatArray:
    """log E, the AsympCS e-value (v7 eq. 155): t rho^2 z^2 / (2 (t rho^2 + 1)) - log(t rho^2+1)/2.

    z_score = (d - theta_0) / sqrt(v); S_t^2 / sigma^2 in the paper equals t * z^2. The
    p-value is min(1, 1/E); E >= 1/alpha exactly when the CS excludes theta_0.
    """
    z = _finite_array(z_score, "z_score")
    t = _positive_array(n, "n")
    if not (math.isfinite(rho_squared) and rho_squared > 0):
        raise StatsInputError(f"rho_squared must be a positive number, got {rho_squared}")
    t_rho2 = t * rho_squared
    return -0.5 * np.log1p(t_rho2) + t_rho2 * z * z / (2.0 * (t_rho2 + 1.0))


# ----------------------------------------------------------------------------------------
# One-call API on SampleStats
# ----------------------------------------------------------------------------------------


def msprt(
    control: SampleStats,
    treatment: SampleStats,
    *,
    planned_n: float,
    alpha: float = 0.05,
    theta_0: float = 0.0,
    kind: MetricKind = "continuous",
    min_n: int = DEFAULT_MIN_N,
    previous: SequentialResult | None = None,
) -> SequentialResult:
    """The mixture SPRT of treatment - control against theta_0 at the current look.

    Args:
        control, treatment: cumulative sufficient statistics of each arm at this look.
        planned_n: N*, the total sample size (both arms) the test should be most sensitive at.
        alpha: significance level; the running false-positive rate stays <= alpha.
        theta_0: the null difference.
        kind: "continuous" (Welch variance s^2 / n per arm) or "binary" (the metric is 0/1:
            the plug-in variance p(1 - p) / n per arm; non-0/1 statistics are refused).
        min_n: observations per arm (at least 2) before a look may reject; below it the look is
            uninformative (p_value 1, interval (-inf, inf)) instead of an error.
        previous: this test's result at the previous look, to continue the running minimum
            p-value (2) and the intersection of intervals (3). None starts afresh.
    """
    kind = _check_design(alpha, planned_n, theta_0, min_n, kind)
    look = _look(control, treatment, kind, min_n)
    if look.informative:
        tau2 = float(msprt_mixing_variance(look.variance * look.t, planned_n, alpha))
        log_lambda = float(
            mixture_log_likelihood_ratio(look.estimate - theta_0, look.variance, tau2)
        )
        radius = float(mixture_radius(look.variance, tau2, alpha))
    else:
        log_lambda, radius = 0.0, math.inf
    return _result(
        "msprt",
        control,
        treatment,
        look,
        radius,
        log_lambda,
        alpha=alpha,
        theta_0=theta_0,
        planned_n=planned_n,
        min_n=min_n,
        rho="exact",
        previous=previous,
    )


def asymptotic_cs(
    control: SampleStats,
    treatment: SampleStats,
    *,
    planned_n: float,
    alpha: float = 0.05,
    theta_0: float = 0.0,
    kind: MetricKind = "continuous",
    min_n: int = DEFAULT_MIN_N,
    rho: RhoRule = "exact",
    previous: SequentialResult | None = None,
) -> SequentialResult:
    """The asymptotic confidence sequence for treatment - control at the current look.

    The interval is v7 eq. 9 with sigma_hat^2 = t * v and t = n_c + n_t; the p-value is the
    inverse e-value (v7 eq. 155) at theta_0, so `reject` is exactly "the CS excludes theta_0".
    rho="exact" tunes rho^2 with the Lambert-W width minimiser, rho="approximate" with v7 eq.
    161's closed form (gbstats' choice); see `asymptotic_cs_rho_squared`. Other arguments as
    for `msprt`; `previous` turns on the running intersection / minimum.
    """
    kind = _check_design(alpha, planned_n, theta_0, min_n, kind)
    _check_rho(rho)
    look = _look(control, treatment, kind, min_n)
    if look.informative:
        rho2 = asymptotic_cs_rho_squared(planned_n, alpha, rho)
        sigma_hat = math.sqrt(look.variance * look.t)
        radius = sigma_hat * float(asymptotic_cs_margin(look.t, rho2, alpha))
        z = (look.estimate - theta_0) / math.sqrt(look.variance)
        log_evalue = float(asymptotic_cs_log_evalue(z, look.t, rho2))
    else:
        log_evalue, radius = 0.0, math.inf
    return _result(
        "asymptotic_cs",
        control,
        treatment,
        look,
        radius,
        log_evalue,
        alpha=alpha,
        theta_0=theta_0,
        planned_n=planned_n,
        min_n=min_n,
        rho=rho,
        previous=previous,
    )


class SequentialMonitor:
    """Look-by-look use: feed each look's cumulative SampleStats, get the running result.

    `running=True` (the default) keeps the minimum p-value and the intersection of intervals
    over looks; `running=False` reports each look on its own (still valid at every look, but
    the interval may widen again and the p-value rise).
    """

    def __init__(
        self,
        *,
        method: Method = "msprt",
        planned_n: float,
        alpha: float = 0.05,
        theta_0: float = 0.0,
        kind: MetricKind = "continuous",
        running: bool = True,
        min_n: int = DEFAULT_MIN_N,
        rho: RhoRule = "exact",
    ) -> None:
        if method not in ("msprt", "asymptotic_cs"):
            raise StatsInputError(f"method must be 'msprt' or 'asymptotic_cs', got {method!r}")
        kind = _check_design(alpha, planned_n, theta_0, min_n, kind)
        _check_rho(rho)
        self.method: Method = method
        self.planned_n = planned_n
        self.alpha = alpha
        self.theta_0 = theta_0
        self.kind: MetricKind = kind
        self.running = running
        self.min_n = min_n
        self.rho: RhoRule = rho
        self._result: SequentialResult | None = None

    @property
    def result(self) -> SequentialResult | None:
        """The result of the latest look (None before the first)."""
        return self._result

    def update(self, control: SampleStats, treatment: SampleStats) -> SequentialResult:
        previous = self._result
        if previous is not None and not self.running:
            _check_cumulative(previous, control, treatment)
            previous = None
        common = {
            "planned_n": self.planned_n,
            "alpha": self.alpha,
            "theta_0": self.theta_0,
            "kind": self.kind,
            "min_n": self.min_n,
            "previous": previous,
        }
        if self.method == "msprt":
            self._result = msprt(control, treatment, **common)  # type: ignore[arg-type]
        else:
            self._result = asymptotic_cs(
                control,
                treatment,
                rho=self.rho,
                **common,  # type: ignore[arg-type]
            )
        return self._result


# ----------------------------------------------------------------------------------------
# Internals
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Look:
    """The data of one look: d, v, t, and whether both arms have reached min_n."""

    estimate: float
    variance: float
    t: int
    informative: bool


def _look(control: SampleStats, treatment: SampleStats, kind: MetricKind, min_n: int) -> _Look:
    """(d, v, t) of the look; below min_n per arm only what can be computed (else NaN)."""
    if kind == "binary":  # refuse non-0/1 data whatever the sample size
        check_binary("the control arm", control)
        check_binary("the treatment arm", treatment)
    t = control.n + treatment.n
    if min(control.n, treatment.n) < min_n:
        estimate = treatment.mean - control.mean if control.n and treatment.n else math.nan
        variance = math.nan
        if control.n >= 2 and treatment.n >= 2:
            variance = mean_variance(control, kind) + mean_variance(treatment, kind)
        return _Look(estimate, variance, t, informative=False)
    # Welch's s^2 / n per arm, or Johari et al.'s Bernoulli plug-in p(1 - p) / n if binary.
    var_c = mean_variance(control, kind)
    var_t = mean_variance(treatment, kind)
    if var_c == 0.0 and var_t == 0.0:
        raise StatsInputError(
            "both arms have zero variance (every value in each arm is the same), so the "
            "difference has no sampling variability to test against; wait for more data"
        )
    return _Look(treatment.mean - control.mean, var_c + var_t, t, informative=True)


def _result(
    method: Method,
    control: SampleStats,
    treatment: SampleStats,
    look: _Look,
    radius: float,
    log_lambda: float,
    *,
    alpha: float,
    theta_0: float,
    planned_n: float,
    min_n: int,
    rho: RhoRule,
    previous: SequentialResult | None,
) -> SequentialResult:
    # 1/Lambda capped at 1; exp(-inf) = 0 for overwhelming evidence, never NaN. An
    # uninformative look has log_lambda 0 (p = 1) and radius inf.
    p_value = math.exp(-max(log_lambda, 0.0))
    if look.informative:
        ci_low, ci_high = look.estimate - radius, look.estimate + radius
    else:
        ci_low, ci_high = -math.inf, math.inf
    failed = False
    if previous is not None:
        _check_previous(previous, method, alpha, theta_0, planned_n, min_n, rho)
        _check_cumulative(previous, control, treatment)
        p_value = min(p_value, previous.p_value)  # eq. 2
        # The intersection (3). If it is empty (ci_low > ci_high) it stays empty at every
        # later look: every theta has been excluded at some look, theta_0 included.
        ci_low, ci_high = max(ci_low, previous.ci_low), min(ci_high, previous.ci_high)
        failed = previous.sequence_failed or ci_low > ci_high
    return SequentialResult(
        method=method,
        estimate=look.estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        # An empty intersection excludes theta_0 (so its running p-value is <= alpha up to
        # rounding at the boundary); `or failed` keeps reject and the interval consistent.
        reject=p_value <= alpha or failed,
        alpha=alpha,
        theta_0=theta_0,
        planned_n=planned_n,
        std_error=math.sqrt(look.variance),
        n_control=control.n,
        n_treatment=treatment.n,
        min_n=min_n,
        rho=rho,
        sequence_failed=failed,
    )


def _check_previous(
    previous: SequentialResult,
    method: Method,
    alpha: float,
    theta_0: float,
    planned_n: float,
    min_n: int,
    rho: RhoRule,
) -> None:
    design = (
        previous.method,
        previous.alpha,
        previous.theta_0,
        previous.planned_n,
        previous.min_n,
        previous.rho,
    )
    current = (method, alpha, theta_0, planned_n, min_n, rho)
    if design != current:
        raise StatsInputError(
            "previous result comes from another design (method, alpha, theta_0, planned_n, "
            f"min_n, rho) = {design}; this look is {current}. A running p-value "
            "or interval only holds when every look uses the same design"
        )


def _check_cumulative(
    previous: SequentialResult, control: SampleStats, treatment: SampleStats
) -> None:
    if control.n < previous.n_control or treatment.n < previous.n_treatment:
        raise StatsInputError(
            "looks must be cumulative: the arms went from "
            f"(control={previous.n_control}, treatment={previous.n_treatment}) to "
            f"(control={control.n}, treatment={treatment.n}) observations"
        )


def _check_design(
    alpha: float, planned_n: float, theta_0: float, min_n: int, kind: str
) -> MetricKind:
    check_alpha(alpha)
    _check_planned_n(planned_n)
    if not math.isfinite(theta_0):
        raise StatsInputError(f"theta_0 must be a finite number, got {theta_0}")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 2:
        raise StatsInputError(
            f"min_n must be an integer >= 2 (a variance needs 2 observations), got {min_n!r}"
        )
    return check_kind(kind)


def _check_rho(rho: str) -> None:
    if rho not in ("exact", "approximate"):
        raise StatsInputError(f"rho must be 'exact' or 'approximate', got {rho!r}")


def _check_planned_n(planned_n: float) -> None:
    if not (math.isfinite(planned_n) and planned_n > 0):
        raise StatsInputError(
            f"planned_n must be a positive, finite total sample size (both arms), got {planned_n}"
        )


def _finite_array(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise StatsInputError(f"{name} must be finite")
    return array


def _positive_array(values: npt.ArrayLike, name: str) -> FloatArray:
    array = _finite_array(values, name)
    if not np.all(array > 0):
        raise StatsInputError(f"{name} must be positive, got a minimum of {array.min()}")
    return array
