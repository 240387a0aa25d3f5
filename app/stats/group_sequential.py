"""Group-sequential designs: efficacy boundaries for K planned looks, and what they imply.

An experiment that will be analysed at K looks, at information fractions
0 < t_1 < ... < t_K = 1, rejects H0 at the first look k whose z-statistic crosses the
boundary (Z_k >= upper_k, or for a two-sided design also Z_k <= lower_k = -upper_k), and
accepts H0 if no look does. The boundaries are chosen so that the probability of ever
rejecting under H0 is alpha.

The z-statistics at the looks have the canonical joint distribution (Jennison & Turnbull
2000, "Group Sequential Methods with Applications to Clinical Trials", sec. 3.1):
Z_k ~ N(theta * sqrt(t_k), 1) with Cov(Z_j, Z_k) = sqrt(t_j / t_k) for j <= k. Equivalently
the score S_k = Z_k * sqrt(t_k) is a Brownian motion with drift theta observed at times t_k
(independent increments S_k - S_{k-1} ~ N(theta * Delta_k, Delta_k)). theta is the drift at
full information: the expected z-statistic at the last look.

Boundaries come from one of two constructions:

* Lan-DeMets alpha spending (Lan & DeMets 1983, Biometrika 70:659): a spending function
  alpha(t) fixes the cumulative type I error spent by information fraction t, and the
  boundary at look k is the root of P(first crossing at look k | H0) = alpha(t_k) -
  alpha(t_{k-1}) (J&T 2000 ch. 7). Families: O'Brien-Fleming type
  2 - 2 Phi(z_{1-a/2} / sqrt(t)), Pocock type a ln(1 + (e - 1) t) (both Lan & DeMets 1983),
  and the power family a t^rho (Kim & DeMets 1987).
* Classical constant-shape designs: upper_k = c * t_k^(delta - 1/2) (Wang & Tsiatis 1987),
  with Pocock (1977) at delta = 1/2 (a constant boundary) and O'Brien & Fleming (1979) at
  delta = 0 (c / sqrt(t_k), i.e. c * sqrt(K / k) for equal spacing), c solved so that the
  overall type I error is alpha.

Two-sided designs follow the ldbounds / gsDesign convention (Reboussin et al. 2000, Controlled
Clinical Trials 21:190): "two-sided alpha" puts alpha/2 on each side, and each side spends its
alpha/2 through the one-sided spending function. For the O'Brien-Fleming type this is
2 - 2 Phi(z_{1-alpha/4} / sqrt(t)) per side, not half of Lan & DeMets' two-sided
2 - 2 Phi(z_{1-alpha/2} / sqrt(t)); it is what reproduces the published ldbounds tables.

Probabilities are computed by the recursive numerical integration of Armitage, McPherson &
Rowe (1969, JRSS A 132:235) in the form of J&T (2000) ch. 19: the sub-density of Z_k on the
continuation region is carried from look to look on a grid of 6r - 1 points (sec. 19.2)
refined to Simpson's rule, with r = GRID_R. The results match published tables to the
decimals they print, and rpact's 8-digit values to 1e-7 (tests/stats/test_group_sequential.py;
docs/statistics/group-sequential.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from app.stats.common import MetricKind, check_alpha, check_binary, check_kind, mean_variance
from app.stats.sufficient import SampleStats, StatsInputError

FloatArray = npt.NDArray[np.float64]
SpendingFunction = Callable[[npt.ArrayLike], FloatArray]
"""Cumulative type I error spent by information fraction t (one boundary)."""

SPENDING_KINDS = ("obrien_fleming", "pocock", "power")
CLASSICAL_KINDS = ("pocock", "obrien_fleming", "wang_tsiatis")

GRID_R = 24
"""J&T (2000) sec. 19.2 grid size: 6r - 1 points per look, 12r - 3 with Simpson midpoints.
Every value the tests check is within 2e-6 of its value with r = 64."""

Z_LIMIT = 40.0
"""Roots are searched within [-Z_LIMIT, Z_LIMIT]: P(N(0, 1) > 40) underflows to 0."""

ROOT_TOLERANCE = 1e-12


def _grid_offsets(r: int) -> FloatArray:
    """J&T (2000) sec. 19.2: 6r - 1 points around the mean, equally spaced within +-3 sd
    and spreading out logarithmically in the tails to +-(3 + 4 ln r) sd."""
    i = np.arange(1, 6 * r, dtype=np.float64)
    return np.where(
        i < r,
        -3.0 - 4.0 * np.log(r / i),
        np.where(i <= 5 * r, -3.0 + 3.0 * (i - r) / (2.0 * r), 3.0 + 4.0 * np.log(r / (6 * r - i))),
    )


_OFFSETS = _grid_offsets(GRID_R)


class Decision(StrEnum):
    """What a design says at one look."""

    REJECT = "reject"
    CONTINUE = "continue"
    ACCEPT = "accept"


def spending_function(kind: str, alpha: float, rho: float | None = None) -> SpendingFunction:
    """The cumulative alpha spent by information fraction t, for one boundary.

    Args:
        kind: "obrien_fleming", "pocock" or "power".
        alpha: the error this boundary spends in total (alpha(1) = alpha). A two-sided
            design spends alpha/2 through each of its two boundaries.
        rho: the power family's exponent (> 0); only for kind="power".
    Returns:
        f(t) for fractions t in [0, 1], increasing from f(0) = 0 to f(1) = alpha.
    """
    alpha = check_alpha(alpha)
    _check_rho(kind, rho)
    if kind == "obrien_fleming":
        # Lan & DeMets (1983): alpha*_1(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)).
        # -ndtri(alpha/2) is z_{1-alpha/2} without losing digits to 1 - alpha/2.
        z = -float(special.ndtri(alpha / 2.0))

        def obrien_fleming(t: npt.ArrayLike) -> FloatArray:
            fractions = _spending_domain(t)
            with np.errstate(divide="ignore"):  # t = 0 gives -inf, and ndtr(-inf) = 0
                spent: FloatArray = 2.0 * special.ndtr(-z / np.sqrt(fractions))
            return spent

        return obrien_fleming
    if kind == "pocock":
        # Lan & DeMets (1983): alpha*_2(t) = alpha ln(1 + (e - 1) t).
        def pocock(t: npt.ArrayLike) -> FloatArray:
            spent: FloatArray = alpha * np.log1p((math.e - 1.0) * _spending_domain(t))
            return spent

        return pocock
    # Kim & DeMets (1987): alpha t^rho.
    exponent = float(rho)  # type: ignore[arg-type]  # _check_rho: not None for "power"

    def power(t: npt.ArrayLike) -> FloatArray:
        spent: FloatArray = alpha * _spending_domain(t) ** exponent
        return spent

    return power


@dataclass(frozen=True, eq=False)
class CrossingProbabilities:
    """P(the first boundary crossed is at look k, and is the upper / lower one), given theta."""

    theta: float
    information_fractions: FloatArray
    upper: FloatArray
    lower: FloatArray

    @property
    def stop(self) -> FloatArray:
        """P(the experiment stops at look k, rejecting H0)."""
        stop: FloatArray = self.upper + self.lower
        return stop

    @property
    def rejection(self) -> float:
        """P(H0 is rejected at some look): the type I error at theta = 0, else the power."""
        return float(self.stop.sum())

    @property
    def expected_fraction(self) -> float:
        """E[information at stopping] / maximum information (the expected sample size
        as a fraction of the maximum): sum_k t_k P(stop at k), the last look taking the rest."""
        t = self.information_fractions
        early = self.stop[:-1]
        return float((t[:-1] * early).sum() + t[-1] * (1.0 - early.sum()))


@dataclass(frozen=True, eq=False)
class GroupSequentialDesign:
    """Efficacy boundaries on the z-scale for K looks. Build with lan_demets() or classical().

    Attributes:
        information_fractions: t_1 < ... < t_K = 1.
        alpha: the overall type I error (both sides together for a two-sided design).
        sides: 1 (reject for large z only) or 2 (symmetric, alpha/2 per side).
        method: "lan_demets" (alpha spending) or "classical" (constant-shape boundary).
        kind: the spending family or the classical shape.
        parameter: rho for the power family, delta for Wang-Tsiatis, else None.
        upper: reject at look k if Z_k >= upper[k] (inf: this look cannot reject).
        lower: reject at look k if Z_k <= lower[k]; -upper if two-sided, -inf if one-sided.
        alpha_spent: the type I error spent at each look (both sides together).
    """

    information_fractions: FloatArray
    alpha: float
    sides: int
    method: str
    kind: str
    parameter: float | None
    upper: FloatArray
    lower: FloatArray
    alpha_spent: FloatArray

    def __post_init__(self) -> None:
        for name in ("information_fractions", "upper", "lower", "alpha_spent"):
            getattr(self, name).setflags(write=False)

    @classmethod
    def lan_demets(
        cls,
        looks: int | Sequence[float],
        alpha: float = 0.05,
        sides: int = 2,
        spending: str = "obrien_fleming",
        rho: float | None = None,
    ) -> GroupSequentialDesign:
        """Boundaries from a Lan-DeMets spending function (ldbounds::ldBounds).

        Args:
            looks: K equally spaced looks, or the information fraction of each look.
            alpha: overall type I error; a two-sided design spends alpha/2 on each side.
            sides: 1 or 2.
            spending: "obrien_fleming", "pocock" or "power".
            rho: the power family's exponent (alpha t^rho), > 0.
        """
        t = _information_fractions(looks)
        alpha = check_alpha(alpha)
        sides = _check_sides(sides)
        cumulative = sides * spending_function(spending, alpha / sides, rho)(t)
        cumulative[-1] = alpha  # exactly: alpha(1) = alpha up to the last bit
        spent = np.diff(cumulative, prepend=0.0)
        upper = np.empty_like(t)
        state = _START
        for k in range(t.size):
            # J&T (2000) ch. 7 and sec. 19.4: look k's boundary spends exactly its increment,
            # given the sub-density of the paths that have not stopped before it.
            upper[k] = _solve_boundary(state, float(t[k]), float(spent[k]), sides)
            if k + 1 < t.size:
                lower_k = -upper[k] if sides == 2 else -math.inf
                state = _advance(state, float(t[k]), 0.0, float(upper[k]), lower_k)
        return cls(
            information_fractions=t,
            alpha=alpha,
            sides=sides,
            method="lan_demets",
            kind=spending,
            parameter=None if rho is None else float(rho),
            upper=upper,
            lower=_lower_of(upper, sides),
            alpha_spent=spent,
        )

    @classmethod
    def classical(
        cls,
        looks: int | Sequence[float],
        alpha: float = 0.05,
        sides: int = 2,
        kind: str = "pocock",
        delta: float | None = None,
    ) -> GroupSequentialDesign:
        """Pocock (1977), O'Brien-Fleming (1979) or Wang-Tsiatis (1987) boundaries.

        upper_k = c * t_k^(delta - 1/2), with delta = 1/2 for Pocock, 0 for O'Brien-Fleming
        (c * sqrt(K / k) for equal spacing), and c solved so that the overall type I error
        is alpha. c is J&T (2000) Table 2.1's C_P(K, alpha) and Table 2.3's C_B(K, alpha).

        Args:
            looks: K equally spaced looks, or the information fraction of each look.
            alpha: overall type I error; a two-sided design has alpha/2 on each side.
            sides: 1 or 2.
            kind: "pocock", "obrien_fleming" or "wang_tsiatis".
            delta: the Wang-Tsiatis shape, in [0, 1/2]; only for kind="wang_tsiatis".
        """
        t = _information_fractions(looks)
        alpha = check_alpha(alpha)
        sides = _check_sides(sides)
        shape = t ** (_classical_delta(kind, delta) - 0.5)

        def excess(c: float) -> float:
            upper = c * shape
            return _crossings(t, upper, _lower_of(upper, sides), 0.0).rejection - alpha

        c = _root(excess, 0.0 if sides == 2 else -Z_LIMIT, Z_LIMIT)
        upper = c * shape
        lower = _lower_of(upper, sides)
        return cls(
            information_fractions=t,
            alpha=alpha,
            sides=sides,
            method="classical",
            kind=kind,
            parameter=None if delta is None else float(delta),
            upper=upper,
            lower=lower,
            alpha_spent=_crossings(t, upper, lower, 0.0).stop,
        )

    @property
    def looks(self) -> int:
        return int(self.information_fractions.size)

    @property
    def cumulative_alpha(self) -> FloatArray:
        """Type I error spent by each look, both sides together; alpha at the last."""
        cumulative: FloatArray = np.cumsum(self.alpha_spent)
        return cumulative

    @property
    def nominal_alpha(self) -> FloatArray:
        """The p-value (sides-sided) each look's boundary amounts to: reject at look k when
        the fixed-sample p-value is <= nominal_alpha[k]."""
        nominal: FloatArray = self.sides * special.ndtr(-self.upper)
        return nominal

    def crossing_probabilities(self, theta: float = 0.0) -> CrossingProbabilities:
        """P(first crossing at look k) when the drift (E[Z] at full information) is theta."""
        return _crossings(
            self.information_fractions, self.upper, self.lower, _finite("theta", theta)
        )

    def drift_for_power(self, power: float) -> float:
        """The drift theta > 0 at which P(crossing an upper boundary) = power.

        The maximum information is (theta / (z_{1-alpha/sides} + z_{power}))^2 times that of
        a fixed-sample test with the same alpha and power (J&T 2000 ch. 2's inflation factor R).
        """
        power = _finite("power", power)
        floor = self.alpha / self.sides
        if not floor < power < 1.0:
            raise StatsInputError(f"power must be in ({floor:g}, 1), got {power:g}")

        def shortfall(theta: float) -> float:  # decreasing in theta
            return power - float(self.crossing_probabilities(theta).upper.sum())

        return _root(shortfall, 0.0, Z_LIMIT)

    def decide(self, look: int, z: float) -> Decision:
        """reject / continue at look 1..K-1, reject / accept at look K, given the observed z."""
        if isinstance(look, bool) or not isinstance(look, int) or not 1 <= look <= self.looks:
            raise StatsInputError(f"look must be an integer in 1..{self.looks}, got {look!r}")
        z = _finite("z", z)
        if z >= self.upper[look - 1] or z <= self.lower[look - 1]:
            return Decision.REJECT
        return Decision.ACCEPT if look == self.looks else Decision.CONTINUE


@dataclass(frozen=True, slots=True)
class Look:
    """One interim analysis of treatment - control: the z-statistic to compare with the
    design's boundary at this look, and the information fraction the look corresponds to."""

    z: float
    information_fraction: float
    estimate: float
    std_error: float


def look_statistic(
    control: SampleStats, treatment: SampleStats, *, kind: MetricKind, planned_n: int
) -> Look:
    """The z-statistic and information fraction of a look, from the arms' statistics so far.

    z = (mean_t - mean_c) / sqrt(Var(mean_c) + Var(mean_t)) (Welch, or p(1 - p)/n per arm for
    binary metrics); the information fraction is (n_c + n_t) / planned_n, the usual proxy when
    the per-unit variance and the split stay as planned (Jennison & Turnbull 2000, sec. 3.1).
    A look past the planned information is refused: recomputing the design then would inflate
    the type I error (docs/statistics/group-sequential.md).
    """
    kind = check_kind(kind)
    if isinstance(planned_n, bool) or not isinstance(planned_n, int) or planned_n < 2:
        raise StatsInputError(f"planned_n must be a whole number >= 2, got {planned_n!r}")
    for name, arm in (("control", control), ("treatment", treatment)):
        if arm.n < 2:
            raise StatsInputError(f"the {name} arm has {arm.n} observations; a look needs 2")
        if kind == "binary":
            check_binary(f"the {name} arm", arm)
    fraction = (control.n + treatment.n) / planned_n
    if fraction > 1.0:
        raise StatsInputError(
            f"this look has {control.n + treatment.n} units, more than planned_n={planned_n}: "
            "a group-sequential design cannot be recomputed after its looks were used"
        )
    variance = mean_variance(control, kind) + mean_variance(treatment, kind)
    if variance <= 0.0:
        raise StatsInputError("both arms have zero variance: there is no noise to test against")
    estimate = treatment.mean - control.mean
    std_error = math.sqrt(variance)
    return Look(estimate / std_error, fraction, estimate, std_error)


def boundary_crossing_probabilities(
    looks: int | Sequence[float],
    upper: npt.ArrayLike,
    lower: npt.ArrayLike | None = None,
    theta: float = 0.0,
) -> CrossingProbabilities:
    """Crossing probabilities of any boundaries (e.g. ones used in practice, not designed here).

    Args:
        looks: K equally spaced looks, or the information fraction of each look.
        upper: K upper z-boundaries (inf: no upper boundary at that look).
        lower: K lower z-boundaries, below upper (-inf: none); default none at all.
        theta: the drift, E[Z] at full information.
    """
    t = _information_fractions(looks)
    up = np.asarray(upper, dtype=np.float64)
    low = np.full_like(t, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    if up.shape != t.shape or low.shape != t.shape:
        raise StatsInputError(
            f"need one upper and one lower boundary per look ({t.size}), "
            f"got {up.size} and {low.size}"
        )
    if np.isnan(up).any() or np.isnan(low).any() or (low >= up).any():
        raise StatsInputError("each look's lower boundary must be below its upper boundary")
    return _crossings(t, up, low, _finite("theta", theta))


# --- The recursion (J&T 2000 ch. 19) -------------------------------------------------------


class _State(NamedTuple):
    """The sub-density of Z at a look on the continuation region, as Simpson weights times
    the density at the grid nodes (so a sum over nodes is an integral)."""

    z: FloatArray
    mass: FloatArray
    t: float


# Before the first look: all mass at Z = 0 at information 0 (S_0 = 0).
_START = _State(np.zeros(1), np.ones(1), 0.0)


def _crossing(
    state: _State, t: float, theta: float, upper: float, lower: float
) -> tuple[float, float]:
    """P(no crossing before this look, and Z >= upper / Z <= lower at it).

    Given Z_{k-1} = z, S_k = Z_k sqrt(t_k) ~ N(z sqrt(t_{k-1}) + theta Delta, Delta)
    (J&T 2000 sec. 19.2), so each node contributes a normal tail probability.
    """
    step = t - state.t
    centre = state.z * math.sqrt(state.t) + theta * step
    sd = math.sqrt(step)
    up = float(state.mass @ special.ndtr((centre - upper * math.sqrt(t)) / sd))
    low = float(state.mass @ special.ndtr((lower * math.sqrt(t) - centre) / sd))
    return up, low


def _advance(state: _State, t: float, theta: float, upper: float, lower: float) -> _State:
    """The sub-density at this look on (lower, upper), from the previous look's:
    h_k(z) = sum_i mass_i sqrt(t_k / Delta) phi((z sqrt(t_k) - centre_i) / sqrt(Delta))
    (J&T 2000 sec. 19.2, eq. for h_k on the Z scale)."""
    z, weights = _simpson_grid(theta * math.sqrt(t), lower, upper)
    step = t - state.t
    centre = state.z * math.sqrt(state.t) + theta * step
    u = (z[None, :] * math.sqrt(t) - centre[:, None]) / math.sqrt(step)
    density = state.mass @ (np.exp(-0.5 * u * u) * math.sqrt(t / step / (2.0 * math.pi)))
    return _State(z, weights * density, t)


def _simpson_grid(mean: float, lower: float, upper: float) -> tuple[FloatArray, FloatArray]:
    """J&T (2000) sec. 19.2: the 6r - 1 points around the mean, cut to (lower, upper) with
    the boundaries themselves added, and the midpoint of each interval for Simpson's rule."""
    points = mean + _OFFSETS
    lo, hi = max(lower, points[0]), min(upper, points[-1])
    if hi <= lo:  # the continuation region lies beyond +-(3 + 4 ln r) sd: no mass left
        return np.zeros(1), np.zeros(1)
    edges = np.concatenate([[lo], points[(points > lo) & (points < hi)], [hi]])
    widths = np.diff(edges)
    nodes = np.empty(2 * edges.size - 1)
    nodes[0::2] = edges
    nodes[1::2] = edges[:-1] + widths / 2.0
    weights = np.zeros_like(nodes)
    weights[0:-1:2] += widths / 6.0  # Simpson on each interval: (w/6) (f(a) + 4 f(m) + f(b))
    weights[1::2] += 4.0 * widths / 6.0
    weights[2::2] += widths / 6.0
    return nodes, weights


def _crossings(
    t: FloatArray, upper: FloatArray, lower: FloatArray, theta: float
) -> CrossingProbabilities:
    up, low = np.zeros_like(t), np.zeros_like(t)
    state = _START
    for k in range(t.size):
        up[k], low[k] = _crossing(state, float(t[k]), theta, float(upper[k]), float(lower[k]))
        if k + 1 < t.size:
            state = _advance(state, float(t[k]), theta, float(upper[k]), float(lower[k]))
    return CrossingProbabilities(theta, t, up, low)


def _solve_boundary(state: _State, t: float, spend: float, sides: int) -> float:
    """The boundary b at which this look's null crossing probability is `spend`."""
    if spend <= 0.0:
        return math.inf  # nothing to spend: this look cannot reject

    def excess(b: float) -> float:
        up, low = _crossing(state, t, 0.0, b, -b if sides == 2 else -math.inf)
        return up + low - spend

    return _root(excess, 0.0 if sides == 2 else -Z_LIMIT, Z_LIMIT)


def _root(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of a decreasing f on [lo, hi]; lo if f(lo) <= 0 already, hi if f(hi) >= 0."""
    if f(lo) <= 0.0:
        return lo
    if f(hi) >= 0.0:
        return hi
    return float(optimize.brentq(f, lo, hi, xtol=ROOT_TOLERANCE, rtol=4 * np.finfo(float).eps))


def _lower_of(upper: FloatArray, sides: int) -> FloatArray:
    lower: FloatArray = -upper if sides == 2 else np.full_like(upper, -np.inf)
    return lower


# --- Input checks --------------------------------------------------------------------------


def _information_fractions(looks: int | Sequence[float]) -> FloatArray:
    if isinstance(looks, bool):
        raise StatsInputError(f"looks must be a count or a list of fractions, got {looks!r}")
    if isinstance(looks, int | np.integer):
        if looks < 1:
            raise StatsInputError(f"the number of looks must be >= 1, got {looks}")
        return np.arange(1, int(looks) + 1, dtype=np.float64) / int(looks)
    t = np.array(looks, dtype=np.float64).ravel()
    shown = "[" + ", ".join(f"{x:g}" for x in t) + "]"
    if t.size == 0:
        raise StatsInputError("information fractions must not be empty")
    if not np.isfinite(t).all() or t[0] <= 0.0 or t[-1] > 1.0 + 1e-9:
        raise StatsInputError(f"information fractions must be in (0, 1], got {shown}")
    if (np.diff(t) <= 0.0).any():
        raise StatsInputError(f"information fractions must be strictly increasing, got {shown}")
    if abs(t[-1] - 1.0) > 1e-9:
        raise StatsInputError(
            f"the last information fraction must be 1 (the planned maximum), got {t[-1]:g}; "
            "divide the planned information of each look by the last one's"
        )
    t[-1] = 1.0
    return t


def _spending_domain(t: npt.ArrayLike) -> FloatArray:
    fractions = np.asarray(t, dtype=np.float64)
    if not ((fractions >= 0.0) & (fractions <= 1.0)).all():
        raise StatsInputError("a spending function takes information fractions in [0, 1]")
    return fractions


def _check_sides(sides: int) -> int:
    if sides not in (1, 2) or isinstance(sides, bool):
        raise StatsInputError(f"sides must be 1 or 2, got {sides!r}")
    return int(sides)


def _check_rho(kind: str, rho: float | None) -> None:
    if kind not in SPENDING_KINDS:
        raise StatsInputError(
            f"unknown spending function {kind!r}: use one of {', '.join(SPENDING_KINDS)}"
        )
    if kind != "power":
        if rho is not None:
            raise StatsInputError(f"rho is the power family's exponent; {kind!r} takes none")
        return
    if rho is None:
        raise StatsInputError("the power family alpha * t^rho needs rho > 0, got none")
    if not _finite("rho", rho) > 0.0:
        raise StatsInputError(f"rho must be > 0, got {rho:g}")


def _classical_delta(kind: str, delta: float | None) -> float:
    shapes = {"pocock": 0.5, "obrien_fleming": 0.0}
    if kind not in CLASSICAL_KINDS:
        raise StatsInputError(
            f"unknown classical design {kind!r}: use one of {', '.join(CLASSICAL_KINDS)}"
        )
    if kind != "wang_tsiatis":
        if delta is not None:
            raise StatsInputError(f"delta is the Wang-Tsiatis shape; {kind!r} takes none")
        return shapes[kind]
    if delta is None or not 0.0 <= _finite("delta", delta) <= 0.5:
        raise StatsInputError(f"the Wang-Tsiatis shape delta must be in [0, 0.5], got {delta}")
    return float(delta)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise StatsInputError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise StatsInputError(f"{name} must be finite, got {value!r}")
    return number
