"""Sample ratio mismatch (SRM): did each arm get the number of exposures the design implies?

An SRM check is Pearson's chi-square goodness-of-fit test of the observed exposure counts per
arm against their expected counts (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in
Online Controlled Experiments", KDD '19; Kohavi, Tang & Xu 2020, ch. 21). A p-value below
the threshold (default 0.001) means the assignment, the logging or the analysis filter is
broken, and the experiment's metrics should not be trusted until the cause is found.

* Fixed split: expected_a = N * w_a for the intended weights w (summing to 1).
* Adaptive allocation (bandits): the allocation changes from decision to decision, so a fixed
  split has no meaning. Decision t served arm a with the logged probability pi_t(a), hence

      E[count_a] = sum_t pi_t(a)                                                      (1)

  the sum over decisions of arm a's entry of the logged probability vector (not of the
  served arm's propensity alone). The service can SUM these in SQL. Given the allocation
  path, count_a - sum_t pi_t(a) is a martingale whose variance, sum_t pi_t(a)(1 - pi_t(a)),
  is at most that of a multinomial with the average probabilities, so (by the martingale
  central limit theorem) the chi-square with the expectations (1) keeps its false-alarm rate
  at or below the threshold: exact for a constant allocation, conservative when it moves.
  docs/statistics/srm.md gives the argument and says why a fixed-split check is wrong for
  bandits.

Rules the caller relies on:
* Count only experimental exposures (decisions.experimental and not fallback), and compute
  the observed counts and the probability sums over exactly the same decisions.
* An arm with expected count 0 (weight 0) is left out of the test if it has no exposures;
  if it has any, that is a mismatch by construction: p_value 0, statistic inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from app.stats.sufficient import FloatArray, StatsInputError

DEFAULT_THRESHOLD = 0.001
"""Flag an SRM when p < 0.001: the check runs on every experiment every day, so it must be
strict (Lukas Vermeer's SRM checker extension uses 0.01)."""

SUM_TOLERANCE = 1e-6
"""Relative slack for sums that must be 1 (weights, probability vectors) or equal (counts).
Probabilities stored as 4-byte floats still sum to 1 within ~1e-7."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of one SRM check.

    `excluded_arms` had expected 0 and observed 0 and are not part of the test (`dof` counts
    the others). `impossible_arms` had expected 0 but observed exposures: an SRM whatever the
    other counts, reported as statistic inf and p_value 0."""

    statistic: float
    dof: int
    p_value: float
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    threshold: float
    mismatch: bool
    excluded_arms: tuple[int, ...]
    impossible_arms: tuple[int, ...]


def srm_check(
    observed: npt.ArrayLike, weights: npt.ArrayLike, *, threshold: float = DEFAULT_THRESHOLD
) -> SrmResult:
    """Fixed split: observed exposures per arm against the intended weights (summing to 1)."""
    counts = _counts(observed)
    w = _vector(weights, "weights", len(counts))
    if (w < 0.0).any():
        arm = int(np.flatnonzero(w < 0.0)[0])
        raise StatsInputError(f"weights must be >= 0, got {w[arm]} for arm {arm}")
    total_weight = float(w.sum())
    if abs(total_weight - 1.0) > SUM_TOLERANCE:
        raise StatsInputError(f"weights must sum to 1, got {total_weight:.6g}")
    return _pearson(counts, w * (counts.sum() / total_weight), threshold)


def srm_check_adaptive(
    observed: npt.ArrayLike, expected: npt.ArrayLike, *, threshold: float = DEFAULT_THRESHOLD
) -> SrmResult:
    """Adaptive allocation: observed exposures per arm against expected counts (floats).

    expected[a] is the sum over the same decisions of the logged probability of arm a, eq. (1)
    (`expected_counts` computes it from a decision log). Both must sum to the number of
    decisions; a larger gap means the two were filtered differently and is an error."""
    counts = _counts(observed)
    e = _vector(expected, "expected counts", len(counts))
    if (e < 0.0).any():
        arm = int(np.flatnonzero(e < 0.0)[0])
        raise StatsInputError(f"expected counts must be >= 0, got {e[arm]} for arm {arm}")
    n = float(counts.sum())
    total_expected = float(e.sum())
    if abs(total_expected - n) > SUM_TOLERANCE * max(n, 1.0):
        raise StatsInputError(
            f"expected counts sum to {total_expected:.6g} but observed counts to {n:.0f}: "
            "both must cover exactly the same decisions (experimental, non-fallback ones)"
        )
    # Rescaled so both totals agree exactly, as scipy's chisquare requires; the change is
    # within SUM_TOLERANCE, i.e. rounding in the stored probabilities.
    return _pearson(counts, e * (n / total_expected) if total_expected > 0 else e, threshold)


def expected_counts(
    probabilities: npt.ArrayLike, *, experimental: npt.ArrayLike | None = None
) -> FloatArray:
    """Eq. (1): per-arm sums of logged probability vectors, one row per decision.

    `experimental` (one bool per decision) drops the rows that must not be analysed."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise StatsInputError(
            f"probabilities must be a (decisions x arms) table with >= 2 arms, got shape {p.shape}"
        )
    bad = ~((p >= 0.0) & (p <= 1.0))
    if bad.any():
        row, arm = (int(i) for i in np.argwhere(bad)[0])
        raise StatsInputError(
            f"probabilities must be in [0, 1], got {p[row, arm]} (decision {row}, arm {arm})"
        )
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise StatsInputError(
            f"each decision's probabilities must sum to 1, decision {row}'s sum to {sums[row]}"
        )
    totals: FloatArray = p[_mask(experimental, p.shape[0])].sum(axis=0)
    return totals


def srm_check_log(
    arms: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    *,
    experimental: npt.ArrayLike | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> SrmResult:
    """SRM check straight from a decision log: served arm and probability vector per decision.

    The served arm's propensity (its entry in the vector) must be in (0, 1]: an arm cannot be
    served with probability 0, so such a row means a corrupt log."""
    p = np.asarray(probabilities, dtype=np.float64)
    expected = expected_counts(p, experimental=experimental)
    served = np.asarray(arms)
    if served.shape != (p.shape[0],) or not np.issubdtype(served.dtype, np.integer):
        raise StatsInputError(
            f"arms must hold one integer arm index per decision ({p.shape[0]}), "
            f"got shape {served.shape} of {served.dtype}"
        )
    if ((served < 0) | (served >= p.shape[1])).any():
        row = int(np.flatnonzero((served < 0) | (served >= p.shape[1]))[0])
        raise StatsInputError(
            f"decision {row} served arm {served[row]}, not in 0..{p.shape[1] - 1}"
        )
    propensity = p[np.arange(p.shape[0]), served]
    if (propensity <= 0.0).any():
        row = int(np.flatnonzero(propensity <= 0.0)[0])
        raise StatsInputError(
            f"decision {row} served arm {served[row]} with logged probability "
            f"{propensity[row]}: a served arm's propensity must be in (0, 1]"
        )
    mask = _mask(experimental, p.shape[0])
    observed = np.bincount(served[mask], minlength=p.shape[1])
    return srm_check_adaptive(observed, expected, threshold=threshold)


def _pearson(counts: IntArray, expected: FloatArray, threshold: float) -> SrmResult:
    if not 0.0 < threshold < 1.0:
        raise StatsInputError(f"threshold must be in (0, 1), got {threshold}")
    if counts.sum() == 0:
        raise StatsInputError("no exposures observed yet: there is no ratio to check")
    zero = expected == 0.0
    impossible = zero & (counts > 0)
    excluded = zero & (counts == 0)
    kept = ~excluded
    dof = int(kept.sum()) - 1
    if impossible.any():
        statistic, p_value = math.inf, 0.0
    else:
        if dof < 1:
            raise StatsInputError(
                "an SRM check needs at least two arms with a positive expected count"
            )
        result = stats.chisquare(counts[kept], expected[kept])
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return SrmResult(
        statistic=statistic,
        dof=dof,
        p_value=p_value,
        observed=tuple(counts.tolist()),
        expected=tuple(expected.tolist()),
        threshold=threshold,
        mismatch=p_value < threshold,
        excluded_arms=tuple(np.flatnonzero(excluded).tolist()),
        impossible_arms=tuple(np.flatnonzero(impossible).tolist()),
    )


def _counts(observed: npt.ArrayLike) -> IntArray:
    x = np.asarray(observed)
    if x.ndim != 1 or x.size < 2:
        raise StatsInputError(f"observed must hold one count per arm (>= 2 arms), got {x!r}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise StatsInputError(f"observed counts must be numbers, got {x.dtype}")
    xf = x.astype(np.float64)
    if not np.isfinite(xf).all() or (xf != np.round(xf)).any():
        raise StatsInputError(f"observed counts must be whole numbers, got {x.tolist()}")
    if (xf < 0).any():
        arm = int(np.flatnonzero(xf < 0)[0])
        raise StatsInputError(f"observed counts must be >= 0, got {x[arm]} for arm {arm}")
    return xf.astype(np.int64)


def _vector(values: npt.ArrayLike, name: str, arms: int) -> FloatArray:
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (arms,):
        raise StatsInputError(f"{name} must have one entry per arm ({arms}), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise StatsInputError(f"{name} must be finite numbers, got {v.tolist()}")
    return v


def _mask(experimental: npt.ArrayLike | None, rows: int) -> npt.NDArray[np.bool_]:
    if experimental is None:
        return np.ones(rows, dtype=bool)
    mask = np.asarray(experimental)
    if mask.shape != (rows,) or mask.dtype != np.bool_:
        raise StatsInputError(
            f"experimental must hold one bool per decision ({rows}), got shape {mask.shape} "
            f"of {mask.dtype}"
        )
    return mask
