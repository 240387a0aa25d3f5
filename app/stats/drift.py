"""Drift between a reference window and a recent window: feature PSI and per-arm reward rates.

* Population stability index (Siddiqi 2006, "Credit Risk Scorecards", ch. 8; Yurdakul 2018,
  "Statistical Properties of Population Stability Index", PhD thesis, Western Michigan
  University). Over B bins with shares r_i in the reference window and s_i in the recent one

      PSI = sum_i (s_i - r_i) * ln(s_i / r_i)                                            (1)

  a symmetrised Kullback-Leibler divergence (Jeffreys' J = KL(s||r) + KL(r||s)), so PSI >= 0,
  with equality exactly when the shares agree. The usual bands: < 0.1 "stable",
  0.1 to 0.25 "moderate", >= 0.25 "significant" (Siddiqi 2006).

* Empty bins. (1) is infinite when a bin is empty in one window. We add 0.5 to every bin's
  count in both windows before taking shares, s_i = (c_i + 0.5) / (n + 0.5 B): the
  Haldane-Anscombe correction used for log odds ratios with zero cells (Haldane 1956,
  Annals of Human Genetics 20; Anscombe 1956, Biometrika 43), i.e. the posterior mean under
  a Jeffreys Dirichlet(1/2) prior. It keeps PSI finite and changes it by O(B / n). Bins that
  are empty in both windows are dropped first (they carry no information). `smoothing=0`
  gives the textbook formula (then every kept bin must be non-empty in both windows).

* Sampling noise. With common shares pi and independent multinomial samples of sizes n and m,
  PSI / (1/n + 1/m) -> chi-square with B' - 1 degrees of freedom (B' kept bins; Yurdakul
  2018, ch. 3: (1) is then the symmetric chi-square distance to first order). `p_value` is
  that approximation. So E[PSI] ~ (B' - 1)(1/n + 1/m) under no drift: 0.009 for deciles at
  n = m = 2000, but 0.19 for 20 categories at n = m = 200, which is why the service alerts
  only when the band is "significant" AND p_value is small. With bins from the reference
  window's quantiles the reference shares are fixed by construction, so the approximation
  is conservative there.

* Categorical features: bins are the categories seen in either window; beyond the `top_k`
  most frequent (by reference share + recent share, so a new category that takes over the
  recent window stays visible) they are merged into one "(other)" bin.
* Numeric features: cut points are the reference window's quantiles at 1/B, ..., (B-1)/B
  (deciles by default), de-duplicated, so tied values (a spike at 0, a constant feature) get
  one bin instead of many empty ones. Bins are [e_j, e_j+1) with open-ended end bins, so
  values outside the reference range fall into the first or last bin. NaN (a missing
  value) gets its own "(missing)" bin, as in categorical features (None).
* Symmetry: (1) is symmetric in the two windows' shares. PSI of two samples is not exactly
  symmetric, because numeric bins are cut on the reference window; swapping the windows
  changes the bins, not the formula.

* Reward-rate drift per arm: the arm's mean reward in the reference window against the
  recent window with `app.stats.fixed_horizon.compare` (Welch's t-test for continuous
  rewards, the pooled two-proportion z-test for binary ones), Holm's step-down correction
  (Holm 1979) across the arms tested.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from app.stats.common import MetricKind, check_alpha, check_kind
from app.stats.fixed_horizon import adjust_p_values, compare
from app.stats.sufficient import FloatArray, SampleStats, StatsInputError

Band = Literal["stable", "moderate", "significant"]

MODERATE = 0.1
"""PSI at or above this is a "moderate" shift (Siddiqi 2006)."""
SIGNIFICANT = 0.25
"""PSI at or above this is a "significant" shift (Siddiqi 2006)."""
SMOOTHING = 0.5
"""Pseudo-count added to every kept bin of both windows (Haldane-Anscombe)."""
DEFAULT_BINS = 10
"""Numeric features: deciles of the reference window."""
DEFAULT_TOP_K = 20
"""Categorical features: categories kept before the rest are merged into OTHER."""
DEFAULT_MIN_ARM_N = 30
"""Reward drift: an arm is tested only with at least this many decisions in each window."""
OTHER = "(other)"
MISSING = "(missing)"


def band(psi: float) -> Band:
    """The PSI band: < 0.1 stable, [0.1, 0.25) moderate, >= 0.25 significant."""
    if not psi >= 0.0:  # also NaN
        raise StatsInputError(f"PSI must be a number >= 0, got {psi}")
    if psi >= SIGNIFICANT:
        return "significant"
    return "moderate" if psi >= MODERATE else "stable"


@dataclass(frozen=True, slots=True)
class PsiBin:
    """One bin: raw counts and raw shares (count / n) of each window, and its term of (1)
    (computed on the smoothed shares)."""

    label: str
    reference: int
    recent: int
    reference_share: float
    recent_share: float
    contribution: float


@dataclass(frozen=True, slots=True)
class PsiResult:
    """PSI of one feature. `p_value` is the chi-square approximation of the module
    docstring (1.0 when fewer than two bins are kept: nothing can have moved)."""

    psi: float
    band: Band
    kind: Literal["counts", "categorical", "numeric"]
    bins: tuple[PsiBin, ...]
    reference_n: int
    recent_n: int
    p_value: float
    smoothing: float


def psi_from_counts(
    reference: npt.ArrayLike,
    recent: npt.ArrayLike,
    *,
    labels: Sequence[str] | None = None,
    smoothing: float = SMOOTHING,
    kind: Literal["counts", "categorical", "numeric"] = "counts",
) -> PsiResult:
    """PSI (1) of two windows' counts over the same bins."""
    ref = _bin_counts(reference, "reference")
    rec = _bin_counts(recent, "recent")
    if ref.shape != rec.shape:
        raise StatsInputError(
            f"both windows need the same bins, got {ref.size} and {rec.size} counts"
        )
    names = [str(i) for i in range(ref.size)] if labels is None else [str(x) for x in labels]
    if len(names) != ref.size:
        raise StatsInputError(f"labels must name every bin ({ref.size}), got {len(names)}")
    if not (math.isfinite(smoothing) and smoothing >= 0.0):
        raise StatsInputError(f"smoothing must be a number >= 0, got {smoothing}")
    n, m = int(ref.sum()), int(rec.sum())
    if n == 0 or m == 0:
        raise StatsInputError(
            f"each window needs at least one observation, got {n} (reference) and {m} (recent)"
        )
    kept = (ref + rec) > 0
    r_counts, s_counts = ref[kept].astype(np.float64), rec[kept].astype(np.float64)
    if smoothing == 0.0 and ((r_counts == 0) | (s_counts == 0)).any():
        raise StatsInputError(
            "a bin is empty in one window, so PSI is infinite: use smoothing > 0 or merge bins"
        )
    b = int(kept.sum())
    r = (r_counts + smoothing) / (n + smoothing * b)
    s = (s_counts + smoothing) / (m + smoothing * b)
    terms: FloatArray = (s - r) * np.log(s / r)
    value = float(terms.sum())
    p_value = 1.0 if b < 2 else float(stats.chi2.sf(value / (1.0 / n + 1.0 / m), b - 1))
    kept_labels = [label for label, keep in zip(names, kept.tolist(), strict=True) if keep]
    bins = tuple(
        PsiBin(
            label=label,
            reference=int(rc),
            recent=int(sc),
            reference_share=float(rc) / n,
            recent_share=float(sc) / m,
            contribution=float(t),
        )
        for label, rc, sc, t in zip(kept_labels, r_counts, s_counts, terms, strict=True)
    )
    return PsiResult(
        psi=value,
        band=band(value),
        kind=kind,
        bins=bins,
        reference_n=n,
        recent_n=m,
        p_value=p_value,
        smoothing=smoothing,
    )


def categorical_psi(
    reference: Iterable[object],
    recent: Iterable[object],
    *,
    top_k: int = DEFAULT_TOP_K,
    smoothing: float = SMOOTHING,
) -> PsiResult:
    """PSI of a categorical feature: one value per observation (None: missing). Values are
    compared by their string form, so 1 and "1" are one category."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise StatsInputError(f"top_k must be a whole number >= 1, got {top_k!r}")
    ref = Counter(_category(v) for v in reference)
    rec = Counter(_category(v) for v in recent)
    n, m = sum(ref.values()), sum(rec.values())
    if n == 0 or m == 0:
        raise StatsInputError(
            f"each window needs at least one observation, got {n} (reference) and {m} (recent)"
        )
    categories = set(ref) | set(rec)
    ranked = sorted(categories, key=lambda c: (-(ref[c] / n + rec[c] / m), c))
    kept, merged = ranked[:top_k], ranked[top_k:]
    labels = list(kept)
    ref_counts = [ref[c] for c in kept]
    rec_counts = [rec[c] for c in kept]
    if merged:
        labels.append(OTHER)
        ref_counts.append(sum(ref[c] for c in merged))
        rec_counts.append(sum(rec[c] for c in merged))
    return psi_from_counts(
        ref_counts, rec_counts, labels=labels, smoothing=smoothing, kind="categorical"
    )


def numeric_bin_edges(reference: npt.ArrayLike, *, bins: int = DEFAULT_BINS) -> FloatArray:
    """Interior cut points: the reference's finite values' quantiles at 1/bins, ...,
    (bins-1)/bins, de-duplicated (ties and constant features give fewer cut points)."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise StatsInputError(f"bins must be a whole number >= 2, got {bins!r}")
    x = _numbers(reference, "reference")
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.empty(0, dtype=np.float64)
    quantiles = np.quantile(finite, np.arange(1, bins) / bins)
    edges: FloatArray = np.unique(quantiles)
    return edges


def numeric_psi(
    reference: npt.ArrayLike,
    recent: npt.ArrayLike,
    *,
    bins: int = DEFAULT_BINS,
    smoothing: float = SMOOTHING,
) -> PsiResult:
    """PSI of a numeric feature with bins cut on the reference window's quantiles.

    NaN means missing (its own bin); +-inf fall into the end bins."""
    ref = _numbers(reference, "reference")
    rec = _numbers(recent, "recent")
    edges = numeric_bin_edges(ref, bins=bins)
    labels = _interval_labels(edges)
    k = edges.size + 1
    ref_counts = _histogram(ref, edges, k)
    rec_counts = _histogram(rec, edges, k)
    return psi_from_counts(
        ref_counts, rec_counts, labels=[*labels, MISSING], smoothing=smoothing, kind="numeric"
    )


# --- reward-rate drift per arm ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArmDrift:
    """One arm's mean reward, reference against recent. `p_value` / `p_adjusted` (Holm) are
    None when the arm could not be tested; `note` says why."""

    arm: int
    reference_n: int
    recent_n: int
    reference_mean: float | None
    recent_mean: float | None
    difference: float | None
    p_value: float | None
    p_adjusted: float | None
    drift: bool
    note: str | None


@dataclass(frozen=True, slots=True)
class RewardDrift:
    kind: MetricKind
    test: str
    alpha: float
    arms: tuple[ArmDrift, ...]

    @property
    def drifted(self) -> tuple[ArmDrift, ...]:
        return tuple(a for a in self.arms if a.drift)


def reward_drift(
    reference: Sequence[SampleStats],
    recent: Sequence[SampleStats],
    *,
    kind: MetricKind = "continuous",
    alpha: float = 0.01,
    min_n: int = DEFAULT_MIN_ARM_N,
) -> RewardDrift:
    """Per arm: did the mean reward change between the windows? Two-sided tests, Holm-adjusted
    across the arms that have `min_n` observations in both windows (and some variance)."""
    check_kind(kind)
    check_alpha(alpha)
    if len(reference) != len(recent) or not reference:
        raise StatsInputError(
            f"both windows need one SampleStats per arm, got {len(reference)} and {len(recent)}"
        )
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 2:
        raise StatsInputError(f"min_n must be a whole number >= 2, got {min_n!r}")
    raw: list[tuple[float | None, str | None]] = []
    for ref, rec in zip(reference, recent, strict=True):
        if ref.n < min_n or rec.n < min_n:
            raw.append((None, f"fewer than {min_n} decisions in a window"))
            continue
        try:
            raw.append((compare(ref, rec, kind=kind, alpha=alpha).absolute.p_value, None))
        except StatsInputError as exc:  # e.g. no variance in either window
            raw.append((None, str(exc)))
    tested = {i: p for i, (p, _) in enumerate(raw) if p is not None}
    adjusted = adjust_p_values(list(tested.values()), method="holm", alpha=alpha)
    adjusted_of = dict(zip(tested, adjusted.p_adjusted, strict=True))
    arms = []
    for i, (ref, rec) in enumerate(zip(reference, recent, strict=True)):
        p_adj = adjusted_of.get(i)
        ref_mean = ref.mean if ref.n else None
        rec_mean = rec.mean if rec.n else None
        arms.append(
            ArmDrift(
                arm=i,
                reference_n=ref.n,
                recent_n=rec.n,
                reference_mean=ref_mean,
                recent_mean=rec_mean,
                difference=None if ref_mean is None or rec_mean is None else rec_mean - ref_mean,
                p_value=raw[i][0],
                p_adjusted=p_adj,
                drift=p_adj is not None and p_adj <= alpha,
                note=raw[i][1],
            )
        )
    test = "two-proportion z" if kind == "binary" else "Welch t"
    return RewardDrift(kind=kind, test=test, alpha=alpha, arms=tuple(arms))


# --- helpers ---------------------------------------------------------------------------------


def _category(value: object) -> str:
    return MISSING if value is None else str(value)


def _bin_counts(values: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    x = np.asarray(values)
    if x.ndim != 1 or x.size == 0:
        raise StatsInputError(f"{name} counts must be a non-empty list, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise StatsInputError(f"{name} counts must be numbers, got {x.dtype}")
    xf = x.astype(np.float64)
    if not np.isfinite(xf).all() or (xf != np.round(xf)).any() or (xf < 0).any():
        raise StatsInputError(f"{name} counts must be whole numbers >= 0, got {x.tolist()}")
    return xf.astype(np.int64)


def _numbers(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"{name} values must be numbers (NaN: missing): {exc}") from None
    if x.ndim != 1:
        raise StatsInputError(f"{name} values must be one-dimensional, got shape {x.shape}")
    return x


def _histogram(x: FloatArray, edges: FloatArray, k: int) -> npt.NDArray[np.int64]:
    missing = np.isnan(x)
    index = np.searchsorted(edges, x[~missing], side="right")
    counts = np.bincount(index, minlength=k).astype(np.int64)
    return np.append(counts, np.int64(missing.sum()))


def _interval_labels(edges: FloatArray) -> list[str]:
    points = ["-inf", *(f"{e:.6g}" for e in edges.tolist()), "inf"]
    return [
        f"({lo}, {hi})" if j == 0 else f"[{lo}, {hi})"
        for j, (lo, hi) in enumerate(itertools.pairwise(points))
    ]
