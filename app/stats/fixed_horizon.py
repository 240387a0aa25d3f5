"""Fixed-horizon tests of treatment arms against control, from sufficient statistics.

For each treatment arm and metric we report the absolute effect (treatment mean - control
mean) and the relative lift (treatment mean / control mean - 1), each with a confidence
interval and a p-value, for a one- or two-sided alternative about treatment - control.

* Continuous metrics: Welch's unequal-variance t-test (Welch 1947, Biometrika 34(1-2)),
  with the Welch-Satterthwaite degrees of freedom. It is what R's `t.test` and
  `scipy.stats.ttest_ind(equal_var=False)` compute from the raw rows.
* Binary metrics: the two-proportion z-test with the pooled standard error under H0, and the
  Wald interval with the unpooled standard error: what R's `prop.test(correct = FALSE)` and
  statsmodels' `proportions_ztest` / `confint_proportions_2indep(method="wald")` compute.
* Relative lift: delta method for g(m_c, m_t) = m_t / m_c - 1 with independent arms
  (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", KDD '18,
  percent change; also Kohavi, Tang & Xu 2020, "Trustworthy Online Controlled Experiments"):

      Var(m_t / m_c) ~= Var(m_t) / m_c^2 + m_t^2 Var(m_c) / m_c^4

  tested against the metric's reference distribution (Welch t for continuous metrics, as
  GrowthBook's gbstats does; normal for binary ones).
* Multiple testing: Holm (1979) step-down or Benjamini-Hochberg (1995) over every
  (metric, arm) comparison of a report, through statsmodels' `multipletests`.
* Power and sample size through statsmodels: `power_proportions_2indep` /
  `samplesize_proportions_2indep_onetail` (the pooled-null normal approximation of R's
  `power.prop.test`) and `TTestIndPower` (R's `power.t.test`).

docs/statistics/fixed-horizon.md explains how to read the output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.stats import weightstats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import (
    power_proportions_2indep,
    samplesize_proportions_2indep_onetail,
)

from app.stats.common import Alternative as Alternative  # re-exported
from app.stats.common import MetricKind as MetricKind  # re-exported
from app.stats.common import (
    check_alpha,
    check_binary,
    check_kind,
    mean_variance,
    mean_variances,
)
from app.stats.sufficient import FloatArray, SampleStats, StatsInputError, as_arrays

Correction = Literal["holm", "fdr_bh", "bonferroni"]

_SM_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}
_TESTS = {"continuous": "welch-t", "binary": "two-proportion-z"}
_CORRECTIONS = ("holm", "fdr_bh", "bonferroni")


@dataclass(frozen=True, slots=True)
class Effect:
    """One effect of treatment against control on one scale, with its interval and test.

    One-sided alternatives give one-sided intervals: ci_high is +inf for "greater" and
    ci_low is -inf for "less". `dof` is None when the reference distribution is normal."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    alpha: float
    alternative: Alternative
    std_error: float
    statistic: float
    dof: float | None

    @property
    def significant(self) -> bool:
        return self.p_value <= self.alpha


@dataclass(frozen=True, slots=True)
class Comparison:
    """A treatment arm against control on one metric.

    `relative` is None when the lift is undefined: a control mean of 0, or a lift whose
    delta-method standard error is 0 (a treatment that is constantly 0)."""

    kind: MetricKind
    test: str
    control_n: int
    treatment_n: int
    control_mean: float
    treatment_mean: float
    absolute: Effect
    relative: Effect | None


def compare(
    control: SampleStats,
    treatment: SampleStats,
    *,
    kind: MetricKind = "continuous",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> Comparison:
    """Treatment against control on one metric (see `compare_to_control`)."""
    return compare_to_control(
        control, [treatment], kind=kind, alpha=alpha, alternative=alternative
    )[0]


def compare_to_control(
    control: SampleStats,
    treatments: Sequence[SampleStats],
    *,
    kind: MetricKind = "continuous",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> tuple[Comparison, ...]:
    """Every treatment arm against the same control, in one vectorised pass.

    Raises StatsInputError, naming the arm, for an empty arm, an arm too small for a
    variance, a binary metric whose statistics are not those of 0/1 values, or an arm that
    has zero variance together with the control (there is then no noise to test against)."""
    check_alpha(alpha)
    if alternative not in _SM_ALTERNATIVE:
        raise StatsInputError(
            f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}"
        )
    kind = check_kind(kind)
    if len(treatments) == 0:
        raise StatsInputError("there is no treatment arm to compare with the control")
    sm_alternative = _SM_ALTERNATIVE[alternative]
    check = _check_continuous if kind == "continuous" else _check_binary
    check("the control arm", control)
    for i, arm in enumerate(treatments):
        check(f"treatment arm {i}", arm)
    n_t, total_t, _ = as_arrays(treatments)
    mean_t = total_t / n_t
    mean_c = control.mean
    # Welch's s^2 / n for continuous metrics; for binary ones the binomial p(1 - p) / n
    # (maximum likelihood, as in the z-test), not SampleStats.variance, which divides by n - 1.
    var_mean_c = mean_variance(control, kind)
    var_mean_t = mean_variances(treatments, kind)
    _check_some_variance(var_mean_c, var_mean_t)

    if kind == "continuous":
        # Welch-Satterthwaite degrees of freedom (Satterthwaite 1946; Welch 1947), as
        # (v_c + v_t)^2 / (v_c^2/(n_c - 1) + v_t^2/(n_t - 1)) written with the shares
        # w = v / (v_c + v_t), which cannot overflow or underflow. Written out because
        # statsmodels computes it only from raw arrays (CompareMeans.dof_satt) and scipy's
        # ttest_ind_from_stats does not return it. A zero-variance arm has share 0.
        var_diff = var_mean_c + var_mean_t
        share_c, share_t = var_mean_c / var_diff, var_mean_t / var_diff
        dof: FloatArray | None = 1.0 / (share_c**2 / (control.n - 1) + share_t**2 / (n_t - 1))
        se_diff = np.sqrt(var_diff)
        se_null = se_diff
    else:
        dof = None
        se_diff = np.sqrt(var_mean_c + var_mean_t)
        # Pooled standard error under H0: p_c = p_t. Written out because statsmodels'
        # proportions_ztest takes one pair of arms per call; it is the same formula, and
        # the tests check that the two agree.
        pooled = (control.total + total_t) / (control.n + n_t)
        se_null = np.sqrt(pooled * (1.0 - pooled) * (1.0 / control.n + 1.0 / n_t))

    difference = mean_t - mean_c
    absolute = _effects(difference, se_diff, se_null, dof, alpha, alternative, sm_alternative)

    relative: list[Effect | None] = [None] * len(treatments)
    # A lift relative to a zero or negative baseline has no consistent direction (treatment
    # -9 against control -10 is better, yet -9/-10 - 1 < 0), so it is left undefined (None).
    if mean_c > 0.0:
        # Var(m_t/m_c) ~= v_t/m_c^2 + m_t^2 v_c/m_c^4 = (v_t + ratio^2 v_c) / m_c^2.
        ratio = mean_t / mean_c
        lift = ratio - 1.0
        se_lift = np.sqrt(var_mean_t + ratio**2 * var_mean_c) / abs(mean_c)
        defined = (se_lift > 0.0) & np.isfinite(se_lift) & np.isfinite(lift)
        if defined.any():
            rows = np.flatnonzero(defined)
            effects = _effects(
                lift[rows],
                se_lift[rows],
                se_lift[rows],
                None if dof is None else dof[rows],
                alpha,
                alternative,
                sm_alternative,
            )
            for row, effect in zip(rows.tolist(), effects, strict=True):
                relative[row] = effect

    test = _TESTS[kind]
    return tuple(
        Comparison(
            kind=kind,
            test=test,
            control_n=control.n,
            treatment_n=arm.n,
            control_mean=mean_c,
            treatment_mean=float(mean_t[i]),
            absolute=absolute[i],
            relative=relative[i],
        )
        for i, arm in enumerate(treatments)
    )


def _effects(
    estimate: FloatArray,
    se_interval: FloatArray,
    se_test: FloatArray,
    dof: FloatArray | None,
    alpha: float,
    alternative: Alternative,
    sm_alternative: str,
) -> list[Effect]:
    """Intervals and tests for many effects at once, through statsmodels' generic helpers.

    The interval uses se_interval, the test se_test (they differ only for proportions,
    where the test uses the standard error under H0). The helpers are private in statsmodels
    but are what its own t- and z-tests are built on; they take arrays, which its public
    tests do not, and our tests pin their numbers against the raw-data path."""
    zero = np.zeros_like(estimate)
    if dof is None:
        statistic, p_value = weightstats._zstat_generic(estimate, zero, se_test, sm_alternative)
        low, high = weightstats._zconfint_generic(estimate, se_interval, alpha, sm_alternative)
    else:
        statistic, p_value = weightstats._tstat_generic(
            estimate, zero, se_test, dof, sm_alternative
        )
        low, high = weightstats._tconfint_generic(estimate, se_interval, dof, alpha, sm_alternative)
    shape = estimate.shape
    lows = np.broadcast_to(low, shape).tolist()
    highs = np.broadcast_to(high, shape).tolist()
    p_values = np.broadcast_to(p_value, shape).tolist()
    statistics = np.broadcast_to(statistic, shape).tolist()
    estimates, std_errors = estimate.tolist(), se_interval.tolist()
    dofs: list[float | None] = [None] * len(estimates) if dof is None else dof.tolist()
    return [
        Effect(
            estimate=estimates[i],
            ci_low=lows[i],
            ci_high=highs[i],
            p_value=p_values[i],
            alpha=alpha,
            alternative=alternative,
            std_error=std_errors[i],
            statistic=statistics[i],
            dof=dofs[i],
        )
        for i in range(len(estimates))
    ]


def _check_continuous(name: str, arm: SampleStats) -> None:
    if arm.n == 0:
        raise StatsInputError(f"{name} is empty (n = 0): it has no mean to compare")
    if arm.n < 2:
        raise StatsInputError(f"{name} has {arm.n} observation; a variance needs at least 2")


def _check_binary(name: str, arm: SampleStats) -> None:
    if arm.n == 0:
        raise StatsInputError(f"{name} is empty (n = 0): it has no rate to compare")
    check_binary(name, arm)


def _check_some_variance(var_mean_c: float, var_mean_t: FloatArray) -> None:
    if var_mean_c == 0.0 and (var_mean_t == 0.0).any():
        arm = int(np.flatnonzero(var_mean_t == 0.0)[0])
        raise StatsInputError(
            f"the control and treatment arm {arm} both have zero variance (every value "
            "identical within each arm): there is no noise to test the difference against"
        )


# --- Multiple testing --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Multiplicity-adjusted p-values, in input order, and the decisions at `alpha`."""

    p_adjusted: tuple[float, ...]
    reject: tuple[bool, ...]
    method: Correction
    alpha: float


def adjust_p_values(
    p_values: npt.ArrayLike, *, method: Correction = "holm", alpha: float = 0.05
) -> Adjustment:
    """Holm (family-wise error), Benjamini-Hochberg (false discovery rate) or Bonferroni.

    Holm is computed here as the step-down formula (Holm 1979): statsmodels' `multipletests`
    gives the same numbers (the tests check it) but its Holm branch calls gc.collect(), which
    takes 15-80 ms in a process that has imported pandas and statsmodels (more, the larger
    the heap): over the whole budget of a report."""
    check_alpha(alpha)
    if method not in _CORRECTIONS:
        raise StatsInputError(f"method must be one of {', '.join(_CORRECTIONS)}, got {method!r}")
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise StatsInputError("p-values must be numbers in [0, 1]")
    if p.size == 0:
        return Adjustment((), (), method, alpha)
    if method == "holm":
        order = np.argsort(p, kind="stable")
        # p_(i) * (m - i + 1), made monotone from the smallest p upwards, capped at 1.
        stepped = np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1, dtype=np.float64))
        adjusted = np.empty_like(p)
        adjusted[order] = np.minimum(stepped, 1.0)
        reject = adjusted <= alpha
    else:
        reject, adjusted, _, _ = multipletests(p, alpha=alpha, method=method)
    return Adjustment(tuple(adjusted.tolist()), tuple(reject.tolist()), method, alpha)


# --- Reports: many metrics x many arms ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricArms:
    """One metric's statistics: the control arm and each treatment arm by name."""

    kind: MetricKind
    control: SampleStats
    treatments: Mapping[str, SampleStats]


@dataclass(frozen=True, slots=True)
class ReportRow:
    metric: str
    arm: str
    comparison: Comparison
    p_adjusted: float
    reject: bool


@dataclass(frozen=True, slots=True)
class Report:
    """Every (metric, arm) comparison, corrected for multiplicity as one family.

    The correction applies to the absolute-effect p-values; intervals are per comparison."""

    rows: tuple[ReportRow, ...]
    correction: Correction
    alpha: float

    def to_frame(self) -> pd.DataFrame:
        """One row per (metric, arm); an undefined relative lift is <NA>, never NaN."""
        relative = [row.comparison.relative for row in self.rows]

        def lift(field: str) -> pd.Series:
            values = [None if r is None else getattr(r, field) for r in relative]
            return pd.Series(values, dtype="Float64")

        return pd.DataFrame(
            {
                "metric": [row.metric for row in self.rows],
                "arm": [row.arm for row in self.rows],
                "test": [row.comparison.test for row in self.rows],
                "control_n": [row.comparison.control_n for row in self.rows],
                "treatment_n": [row.comparison.treatment_n for row in self.rows],
                "control_mean": [row.comparison.control_mean for row in self.rows],
                "treatment_mean": [row.comparison.treatment_mean for row in self.rows],
                "estimate": [row.comparison.absolute.estimate for row in self.rows],
                "ci_low": [row.comparison.absolute.ci_low for row in self.rows],
                "ci_high": [row.comparison.absolute.ci_high for row in self.rows],
                "p_value": [row.comparison.absolute.p_value for row in self.rows],
                "p_adjusted": [row.p_adjusted for row in self.rows],
                "reject": [row.reject for row in self.rows],
                "relative": lift("estimate"),
                "relative_ci_low": lift("ci_low"),
                "relative_ci_high": lift("ci_high"),
                "relative_p_value": lift("p_value"),
            }
        )


def compare_report(
    metrics: Mapping[str, MetricArms],
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    correction: Correction = "holm",
) -> Report:
    """Compare every treatment arm with control on every metric, then correct as one family."""
    comparisons: list[tuple[str, str, Comparison]] = []
    for metric, arms in metrics.items():
        names = list(arms.treatments)
        try:
            results = compare_to_control(
                arms.control,
                [arms.treatments[name] for name in names],
                kind=arms.kind,
                alpha=alpha,
                alternative=alternative,
            )
        except StatsInputError as error:
            raise StatsInputError(f"metric {metric!r} (arms {names}): {error}") from error
        comparisons.extend(
            (metric, name, result) for name, result in zip(names, results, strict=True)
        )
    adjustment = adjust_p_values(
        [c.absolute.p_value for _, _, c in comparisons], method=correction, alpha=alpha
    )
    rows = tuple(
        ReportRow(metric, arm, comparison, p_adjusted, reject)
        for (metric, arm, comparison), p_adjusted, reject in zip(
            comparisons, adjustment.p_adjusted, adjustment.reject, strict=True
        )
    )
    return Report(rows, correction, alpha)


# --- Power and sample size ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleSize:
    """Units needed in the control arm and in each treatment arm."""

    control: int
    treatment: int


def sample_size_binary(
    *,
    baseline: float,
    mde: float,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
    ratio: float = 1.0,
) -> SampleSize:
    """Units per arm for the two-proportion z-test to detect `mde` with probability `power`.

    mde is absolute (0.01 = one percentage point) unless `relative` (0.1 = +10 %).
    ratio = treatment units / control units. As in R's power.prop.test (strict = FALSE),
    a two-sided design ignores rejections in the wrong direction."""
    diff = _binary_effect(baseline, mde, relative, alternative)
    _check_design(alpha, power, ratio)
    # statsmodels' sample 1 is our treatment and its ratio is nobs2 / nobs1.
    n_treatment = samplesize_proportions_2indep_onetail(
        diff,
        baseline,
        power,
        ratio=1.0 / ratio,
        alpha=alpha,
        alternative=_SM_ALTERNATIVE[alternative],
    )
    return _sample_size(float(n_treatment), ratio)


def power_binary(
    *,
    baseline: float,
    mde: float,
    n_control: int,
    relative: bool = False,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    ratio: float = 1.0,
) -> float:
    """Probability that the two-proportion z-test rejects when the true effect is `mde`."""
    diff = _binary_effect(baseline, mde, relative, alternative)
    _check_design(alpha, None, ratio)
    _check_units(n_control)
    result = power_proportions_2indep(
        diff,
        baseline,
        n_control * ratio,
        ratio=1.0 / ratio,
        alpha=alpha,
        alternative=_SM_ALTERNATIVE[alternative],
        return_results=False,
    )
    return float(result)


def sample_size_continuous(
    *,
    std: float,
    mde: float,
    baseline_mean: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
    ratio: float = 1.0,
) -> SampleSize:
    """Units per arm for the t-test to detect a difference of means `mde`.

    std is the metric's standard deviation per unit (assumed equal in both arms); a relative
    mde needs baseline_mean. ratio = treatment units / control units."""
    effect_size = _continuous_effect(std, mde, baseline_mean, relative, alternative)
    _check_design(alpha, power, ratio)
    n_treatment = TTestIndPower().solve_power(
        effect_size=effect_size,
        nobs1=None,
        alpha=alpha,
        power=power,
        ratio=1.0 / ratio,
        alternative=_SM_ALTERNATIVE[alternative],
    )
    return _sample_size(float(n_treatment), ratio)


def power_continuous(
    *,
    std: float,
    mde: float,
    n_control: int,
    baseline_mean: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    ratio: float = 1.0,
) -> float:
    """Probability that the t-test rejects when the true difference of means is `mde`."""
    effect_size = _continuous_effect(std, mde, baseline_mean, relative, alternative)
    _check_design(alpha, None, ratio)
    _check_units(n_control)
    result = TTestIndPower().power(
        effect_size=effect_size,
        nobs1=n_control * ratio,
        alpha=alpha,
        ratio=1.0 / ratio,
        alternative=_SM_ALTERNATIVE[alternative],
    )
    return float(result)


def _binary_effect(baseline: float, mde: float, relative: bool, alternative: Alternative) -> float:
    if not 0.0 < baseline < 1.0:
        raise StatsInputError(f"baseline must be a rate in (0, 1), got {baseline}")
    diff = baseline * mde if relative else mde
    if not 0.0 < baseline + diff < 1.0:
        raise StatsInputError(
            f"baseline + effect must be a rate in (0, 1), got {baseline} + {diff} = "
            f"{baseline + diff} (is mde {'relative' if relative else 'absolute'} as meant?)"
        )
    _check_direction(diff, alternative)
    return diff


def _continuous_effect(
    std: float, mde: float, baseline_mean: float | None, relative: bool, alternative: Alternative
) -> float:
    if not (math.isfinite(std) and std > 0.0):
        raise StatsInputError(f"std must be a positive number, got {std}")
    if relative:
        if baseline_mean is None or not math.isfinite(baseline_mean) or baseline_mean == 0.0:
            raise StatsInputError("a relative mde needs a finite, non-zero baseline_mean")
        diff = baseline_mean * mde
    else:
        diff = mde
    if not math.isfinite(diff):
        raise StatsInputError(f"mde must be finite, got {mde}")
    _check_direction(diff, alternative)
    return diff / std


def _check_direction(diff: float, alternative: Alternative) -> None:
    if alternative not in _SM_ALTERNATIVE:
        raise StatsInputError(
            f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}"
        )
    if diff == 0.0:
        raise StatsInputError("mde must not be 0: no sample size detects a zero effect")
    if (alternative == "greater" and diff < 0.0) or (alternative == "less" and diff > 0.0):
        raise StatsInputError(
            f"a {alternative!r} alternative needs an effect of that sign, got {diff}"
        )


def _check_design(alpha: float, power: float | None, ratio: float) -> None:
    check_alpha(alpha)
    if power is not None and not alpha < power < 1.0:
        raise StatsInputError(f"power must be in (alpha, 1) = ({alpha}, 1), got {power}")
    if not (math.isfinite(ratio) and ratio > 0.0):
        raise StatsInputError(f"ratio (treatment / control units) must be > 0, got {ratio}")


def _check_units(n_control: int) -> None:
    if n_control < 2:
        raise StatsInputError(f"n_control must be at least 2, got {n_control}")


def _sample_size(n_treatment: float, ratio: float) -> SampleSize:
    # Round up, but not past a value that is an integer up to solver noise.
    def up(x: float) -> int:
        return math.ceil(round(x, 6))

    return SampleSize(control=up(n_treatment / ratio), treatment=up(n_treatment))
