"""P(arm is best | posterior): the Thompson-sampling allocation, by deterministic integration.

Thompson sampling serves arm i with probability P(theta_i = max_j theta_j) under the posterior
(Thompson 1933; Russo et al. 2018, "A Tutorial on Thompson Sampling", sec. 3). We compute that
probability instead of sampling it, so that the logged propensity is the exact probability the
arm was served with, which is what the off-policy estimators and the SRM check need.

For independent posteriors with CDFs F_j and densities f_j,

    P(i best) = integral f_i(x) * prod_{j != i} F_j(x) dx                        (1)

We integrate (1) with composite Gauss-Legendre quadrature on one grid shared by every arm:

* Cell edges are every arm's quantiles at equally spaced normal scores z in [-Z_MAX, Z_MAX]
  (for a Normal posterior these are mean + sd * z; a Beta posterior is integrated over
  logit(theta) and its edges are the logits of its quantiles at Phi(z)). The edges sit
  densest wherever some posterior is narrowest, so a very peaked posterior next to a wide
  one (a near-step in the integrand) is still resolved, and no cell is wider than any arm's
  local quantile step. (For Beta arms with both shapes >= 50 the inner quantiles come from a
  Cornish-Fisher expansion, which is 5x cheaper than inverting the beta function and moves an
  edge by a small fraction of a cell; the support bounds below stay exact.) Edges closer
  together than that are merged (identical or overlapping arms would otherwise multiply the
  work without adding accuracy).
* Only [L, U] is integrated, L = max_j q_j(eps) and U = max_j q_j(1 - eps) with
  eps = Phi(-Z_MAX) ~ 6e-16: below L the maximum is below L with probability <= eps, above U
  with probability <= K * eps. An arm whose whole posterior lies below L gets exactly 0.
* The product in (1) is exp(sum_j log F_j - log F_i), with log F_j floored at LOG_CDF_FLOOR, so
  nothing underflows: a product that would underflow is 0 either way.
* The K results are renormalised to sum to 1 (they do to ~1e-12 before that).

Every arm's values come from the same grid, so identical posteriors get bit-identical
probabilities. Measured against scipy.integrate.quad on 60 random 2-5 arm problems with counts
from 1 to 1e6 the largest absolute error is 4e-8 (the tests require 1e-4); 50 arms take
0.3-8 ms (docs/decision-core.md has the measurements).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import special

from app.stats.sufficient import StatsInputError

FloatArray = npt.NDArray[np.float64]

Z_MAX = 8.0
"""Each posterior's grid spans its Phi(-8) .. Phi(8) quantiles (tails of ~6e-16)."""

Z_STEP = 1.0
"""Spacing of the grid in normal scores: cells are at most ~one posterior sd wide."""

GAUSS_LEGENDRE_NODES = 4
"""Nodes per cell: exact for polynomials of degree 7, so ~1e-7 accuracy on smooth cells."""

CORNISH_FISHER_MIN_SHAPE = 50.0
"""Arms with both shapes at least this place their inner cell edges by Cornish-Fisher."""

LOG_CDF_FLOOR = -1.0e4
"""log F below this is as good as -inf (exp underflows long before) but keeps sums finite."""

MIN_RELATIVE_SD = 1.0e-12
"""A Normal posterior narrower than this (relative to its mean) has no room between doubles."""

LOGIT_LIMIT = 700.0
"""Beta grids are clipped to |logit| <= 700 (theta within 1e-304 of 0 or 1)."""

Z_LEVELS = np.linspace(-Z_MAX, Z_MAX, round(2 * Z_MAX / Z_STEP) + 1)
GL_NODES, GL_WEIGHTS = np.polynomial.legendre.leggauss(GAUSS_LEGENDRE_NODES)
GL_NODES = (GL_NODES + 1.0) / 2.0  # nodes and weights moved from [-1, 1] to [0, 1]
GL_WEIGHTS = GL_WEIGHTS / 2.0

IntArray = npt.NDArray[np.intp]

# log_cdf(arm, x): the log CDF of arm[i] at x[i], element by element.
# log_pdf(x): every arm's log density at the points x, a K x len(x) array.
PairFunction = Callable[[IntArray, FloatArray], FloatArray]
ArmFunction = Callable[[FloatArray], FloatArray]


def p_best_beta(alpha: npt.ArrayLike, beta: npt.ArrayLike) -> FloatArray:
    """P(arm i has the largest mean) for independent Beta(alpha_i, beta_i) posteriors.

    Integrated over y = logit(theta), where every Beta density is smooth and bounded:
    x^(a-1) (1-x)^(b-1) dx = x^a (1-x)^b dy, so shapes below 1 (Jeffreys' 0.5, or smaller)
    have no singular endpoint, and posteriors squeezed against 0 or 1 keep their resolution.

    Args:
        alpha, beta: one positive, finite shape parameter per arm.
    Returns:
        A vector of K probabilities summing to 1.
    """
    a = positive_vector("alpha", alpha)
    b = positive_vector("beta", beta)
    if a.shape != b.shape:
        raise StatsInputError(
            f"alpha and beta must have the same length, got {a.size} and {b.size}"
        )
    if a.size == 1:
        return np.ones(1)
    log_beta_fn = special.betaln(a, b)

    def log_cdf(arm: IntArray, y: FloatArray) -> FloatArray:
        # Below y = 0 use theta = expit(y); above it 1 - theta = expit(-y) and
        # F(theta) = P(1 - theta' >= 1 - theta) = betaincc(b, a, 1 - theta): each branch keeps
        # the small one of theta, 1 - theta exact.
        cdf = np.empty(y.size)
        low = y <= 0.0
        high = ~low
        cdf[low] = special.betainc(a[arm[low]], b[arm[low]], special.expit(y[low]))
        cdf[high] = special.betaincc(b[arm[high]], a[arm[high]], special.expit(-y[high]))
        with np.errstate(divide="ignore"):  # log(0) is floored by the caller
            result: FloatArray = np.log(cdf)
        return result

    def log_pdf(y: FloatArray) -> FloatArray:
        result: FloatArray = (
            a[:, None] * special.log_expit(y)[None, :]
            + b[:, None] * special.log_expit(-y)[None, :]
            - log_beta_fn[:, None]
        )
        return result

    return _p_best(beta_logit_quantiles(a, b), log_cdf, log_pdf)


def beta_logit_quantiles(a: FloatArray, b: FloatArray) -> FloatArray:
    """logit of each Beta's quantiles at levels Phi(Z_LEVELS), as a K x len(Z_LEVELS) array.

    The outermost levels (+-Z_MAX), which bound each arm's support, are always exact
    (`_exact_logit_quantiles`). The inner ones only place cell edges: for an arm whose shapes
    are both >= CORNISH_FISHER_MIN_SHAPE they come from the Cornish-Fisher expansion of
    logit(theta) = log X - log Y (X ~ Gamma(a), Y ~ Gamma(b)), whose cumulants are
    kappa_n = psi^(n-1)(a) + (-1)^n psi^(n-1)(b); there its error is a small fraction of a
    posterior sd, which moves an edge a little and leaves the quadrature's accuracy as it was.
    Other arms get exact inner quantiles too.
    """
    result = np.empty((a.size, Z_LEVELS.size))
    large = np.minimum(a, b) >= CORNISH_FISHER_MIN_SHAPE
    small = ~large
    if small.any():
        result[small] = _exact_logit_quantiles(a[small], b[small], Z_LEVELS)
    if large.any():
        al, bl = a[large], b[large]
        ends = _exact_logit_quantiles(al, bl, Z_LEVELS[[0, -1]])
        inner = _cornish_fisher_logit_quantiles(al, bl, Z_LEVELS[1:-1])
        result[large, 0] = ends[:, 0]
        result[large, -1] = ends[:, 1]
        result[large, 1:-1] = np.clip(inner, ends[:, :1], ends[:, 1:])
    # A shape far below 1 can put a quantile beyond the doubles (x = 0 or 1): such a tail
    # holds no maximum that matters, so clip it to a finite, very far edge.
    clipped: FloatArray = np.clip(result, -LOGIT_LIMIT, LOGIT_LIMIT)
    return np.sort(clipped, axis=1)


def _exact_logit_quantiles(a: FloatArray, b: FloatArray, z: FloatArray) -> FloatArray:
    """logit(x) of Beta(a, b) quantiles at Phi(z), by inverting the regularised beta function.

    logit(x) = log(x) - log(1 - x) needs whichever of x, 1 - x is small to full relative
    precision: x from betaincinv(a, b, level), or 1 - x as the (1 - level)-quantile of
    1 - theta ~ Beta(b, a), with 1 - level = Phi(-z) computed directly (never 1 - Phi(z)).
    """
    x = special.betaincinv(a[:, None], b[:, None], special.ndtr(z)[None, :])
    w = 1.0 - x
    upper = x > 0.5
    rows, cols = np.nonzero(upper)
    w[upper] = special.betaincinv(b[rows], a[rows], special.ndtr(-z[cols]))
    x[upper] = 1.0 - w[upper]
    with np.errstate(divide="ignore"):
        logits: FloatArray = np.log(x) - np.log(w)
    return logits


def _cornish_fisher_logit_quantiles(a: FloatArray, b: FloatArray, z: FloatArray) -> FloatArray:
    """Cornish-Fisher quantiles (to the fourth cumulant) of logit(theta), theta ~ Beta(a, b).

    Cornish & Fisher 1938; the expansion as in Abramowitz & Stegun 26.2.49.
    """
    # psi^(n)(x) = (-1)^(n+1) n! zeta(n + 1, x); zeta is one ufunc call (polygamma is not).
    both = np.concatenate([a, b])
    k = a.size
    psi0, psi1 = special.digamma(both), special.zeta(2.0, both)
    psi2, psi3 = -2.0 * special.zeta(3.0, both), 6.0 * special.zeta(4.0, both)
    mean = psi0[:k] - psi0[k:]
    var = psi1[:k] + psi1[k:]
    sd = np.sqrt(var)
    skew = (psi2[:k] - psi2[k:]) / (var * sd)
    kurt = (psi3[:k] + psi3[k:]) / (var * var)
    g1, g2 = skew[:, None], kurt[:, None]
    zz = z[None, :]
    w = (
        zz
        + g1 / 6.0 * (zz**2 - 1.0)
        + g2 / 24.0 * (zz**3 - 3.0 * zz)
        - g1**2 / 36.0 * (2.0 * zz**3 - 5.0 * zz)
    )
    result: FloatArray = mean[:, None] + sd[:, None] * w
    return result


def p_best_normal(mean: npt.ArrayLike, sd: npt.ArrayLike) -> FloatArray:
    """P(arm i has the largest mean) for independent Normal(mean_i, sd_i^2) posteriors.

    Args:
        mean: one finite posterior mean per arm.
        sd: one positive, finite posterior standard deviation per arm.
    Returns:
        A vector of K probabilities summing to 1.
    """
    mu = finite_vector("mean", mean)
    sigma = positive_vector("sd", sd)
    if mu.shape != sigma.shape:
        raise StatsInputError(
            f"mean and sd must have the same length, got {mu.size} and {sigma.size}"
        )
    if np.any(sigma < MIN_RELATIVE_SD * np.abs(mu)):
        raise StatsInputError(
            f"sd must be at least {MIN_RELATIVE_SD:g} * |mean| to be resolved in double "
            f"precision, got mean {mu.tolist()} and sd {sigma.tolist()}"
        )
    if mu.size == 1:
        return np.ones(1)
    quantiles = mu[:, None] + sigma[:, None] * Z_LEVELS[None, :]
    log_sigma = np.log(sigma)
    half_log_2pi = 0.5 * np.log(2.0 * np.pi)

    def log_cdf(arm: IntArray, x: FloatArray) -> FloatArray:
        # log_ndtr stays accurate far into the lower tail, where log(ndtr) would be -inf.
        result: FloatArray = special.log_ndtr((x - mu[arm]) / sigma[arm])
        return result

    def log_pdf(x: FloatArray) -> FloatArray:
        z = (x[None, :] - mu[:, None]) / sigma[:, None]
        result: FloatArray = -0.5 * z**2 - log_sigma[:, None] - half_log_2pi
        return result

    return _p_best(quantiles, log_cdf, log_pdf)


def _p_best(quantiles: FloatArray, log_cdf: PairFunction, log_pdf: ArmFunction) -> FloatArray:
    """Integrate (1) for every arm on the shared grid built from `quantiles` (K x len(Z_LEVELS))."""
    lowest, highest = quantiles[:, 0], quantiles[:, -1]
    start, stop = float(lowest.max()), float(highest.max())
    nodes, weights = gauss_legendre(cell_edges(quantiles, start, stop))

    # Nodes are sorted, so each arm's support [q(eps), q(1 - eps)] is a contiguous slice.
    # Above its upper quantile an arm's CDF is 1 - O(eps): log F = 0 there. Below it, every
    # (arm, node) pair is evaluated in one call (one ufunc call beats K small ones).
    first = np.searchsorted(nodes, lowest, side="right")
    last = np.searchsorted(nodes, highest, side="left")
    position = np.arange(nodes.size)[None, :]
    below = position < last[:, None]
    arm_of_pair = np.nonzero(below)[0]
    log_cdfs = np.zeros((quantiles.shape[0], nodes.size))
    log_cdfs[below] = log_cdf(arm_of_pair, nodes[np.nonzero(below)[1]])
    np.maximum(log_cdfs, LOG_CDF_FLOOR, out=log_cdfs)
    log_max_cdf = log_cdfs.sum(axis=0)  # log P(max_j theta_j <= x)

    # Outside its support an arm contributes nothing (below L: never the best, to within eps).
    support = (position >= first[:, None]) & (position < last[:, None])
    exponent = np.where(support, log_pdf(nodes) + log_max_cdf[None, :] - log_cdfs, -np.inf)
    p = np.exp(exponent) @ weights
    total = float(p.sum())
    if not (np.isfinite(total) and total > 0.5):
        raise ArithmeticError(f"P(best) integration failed (total mass {total})")
    result: FloatArray = p / total
    return result


def gauss_legendre(edges: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Composite Gauss-Legendre nodes and weights over the cells between sorted `edges`."""
    widths = np.diff(edges)
    nodes: FloatArray = (edges[:-1, None] + widths[:, None] * GL_NODES[None, :]).ravel()
    weights: FloatArray = (widths[:, None] * GL_WEIGHTS[None, :]).ravel()
    return nodes, weights


def cell_edges(quantiles: FloatArray, start: float, stop: float) -> FloatArray:
    """Sorted cell edges from every arm's quantiles in [start, stop], merged where dense.

    A quantile point of arm j may be dropped when the cell that then spans it is no wider than
    arm j's own spacing there (the smaller of its two neighbouring gaps), so every cell stays
    at most one local quantile step of every arm that has a point inside it.
    """
    gaps = np.diff(quantiles, axis=1)
    resolution = np.minimum(
        np.concatenate([gaps[:, :1], gaps], axis=1), np.concatenate([gaps, gaps[:, -1:]], axis=1)
    ).ravel()
    points = quantiles.ravel()
    inside = (points > start) & (points < stop)
    order = np.argsort(points[inside], kind="stable")
    points, resolution = points[inside][order], resolution[inside][order]

    kept = [start]
    previous, finest = start, np.inf  # last point seen; finest resolution since last edge
    for x, r in zip(points.tolist(), resolution.tolist(), strict=True):
        finest = min(finest, r)
        if x - kept[-1] > finest and previous > kept[-1]:
            kept.append(previous)
            finest = r
        previous = x
    if stop > kept[-1]:
        if previous > kept[-1] and stop - kept[-1] > finest:
            kept.append(previous)
        kept.append(stop)
    return np.unique(np.asarray(kept, dtype=np.float64))


def finite_vector(name: str, values: npt.ArrayLike) -> FloatArray:
    """One finite value per arm, as a float array; StatsInputError otherwise."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise StatsInputError(f"{name} must be a non-empty 1-d sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise StatsInputError(f"{name} must be finite, got {array.tolist()}")
    return array


def positive_vector(name: str, values: npt.ArrayLike) -> FloatArray:
    """One finite value > 0 per arm (parameters, standard deviations)."""
    array = finite_vector(name, values)
    if not np.all(array > 0.0):
        raise StatsInputError(f"{name} must be > 0, got {array.tolist()}")
    return array
