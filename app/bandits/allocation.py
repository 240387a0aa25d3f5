"""Probability vectors: validation, the exploration floor, and picking an arm from a vector.

An *allocation* is a probability per arm. Deterministic splits map a hash bucket through it
(`arm_for_bucket`); bandits draw one uniform from a replayable generator (`sample_arm`).
Both use the same inverse-CDF rule, so the arm chosen is the one whose cumulative range
[c_{i-1}, c_i) holds the uniform, and its propensity is exactly p_i.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.bandits.base import Choice
from app.bandits.hashing import decision_uniform

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

SUM_TOLERANCE = 1e-9
"""Every allocation sums to 1 within this."""

TIE_TOLERANCE = 1e-12
"""Scores this close (relative) are tied: rounding in SQL sums must not break a tie."""


def validate_probabilities(
    probabilities: npt.ArrayLike, *, n_arms: int | None = None, name: str = "probabilities"
) -> FloatArray:
    """The vector as float64, after checking it is a probability vector; ValueError if not.

    Rules: 1-d and non-empty (of length n_arms when given), every entry finite and >= 0, and
    the sum within SUM_TOLERANCE of 1.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence, got shape {p.shape}")
    if n_arms is not None and p.size != n_arms:
        raise ValueError(f"{name} must have one entry per arm ({n_arms}), got {p.size}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite, got {p.tolist()}")
    if np.any(p < 0.0):
        raise ValueError(f"{name} must be >= 0, got {p.tolist()}")
    total = math.fsum(p.tolist())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"{name} must sum to 1, got {total!r}")
    return p


def normalise(weights: npt.ArrayLike) -> FloatArray:
    """Non-negative weights scaled to sum to 1 (exactly-rounded sum, math.fsum)."""
    w = np.asarray(weights, dtype=np.float64)
    total = math.fsum(w.tolist())
    if not (math.isfinite(total) and total > 0.0):
        raise ValueError(f"weights must have a positive, finite sum, got {total!r}")
    result: FloatArray = w / total
    return result


def apply_floor(probabilities: npt.ArrayLike, min_probability: float) -> FloatArray:
    """Mix in the uniform allocation so that every arm keeps at least `min_probability`.

    q_i = f + (1 - K f) p_i. Each q_i >= f, sum q = K f + (1 - K f) = 1, and the order of the
    arms is preserved. It is the uniform mixture of EXP3, p_i = (1 - gamma) w_i + gamma / K
    with gamma = K f (Auer et al. 2002, "The Nonstochastic Multiarmed Bandit Problem",
    sec. 3). It keeps propensities away from 0: the variance of inverse-propensity estimates
    grows with 1 / propensity (Dudik, Langford & Li 2011, "Doubly Robust Policy Evaluation").
    """
    p = validate_probabilities(probabilities)
    n_arms = p.size
    if not (math.isfinite(min_probability) and min_probability >= 0.0):
        raise ValueError(f"min_probability must be a finite number >= 0, got {min_probability}")
    if n_arms * min_probability > 1.0 + 1e-12:
        raise ValueError(
            "min_probability * number of arms must be <= 1, "
            f"got {min_probability:g} * {n_arms} = {min_probability * n_arms:g}"
        )
    # No renormalisation afterwards: it could push a floored arm a rounding error below f.
    floored: FloatArray = min_probability + max(0.0, 1.0 - n_arms * min_probability) * p
    return floored


def tied_for_top(scores: FloatArray, candidates: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Mask of the candidates whose score is the candidates' highest, within TIE_TOLERANCE.

    The tolerance is relative to max(1, |top|). No candidates: an all-False mask.
    """
    if not candidates.any():
        return np.zeros(scores.size, dtype=np.bool_)
    top = float(scores[candidates].max())
    result: npt.NDArray[np.bool_] = candidates & (
        scores >= top - TIE_TOLERANCE * max(1.0, abs(top))
    )
    return result


def arm_for_bucket(u: float, weights: Sequence[float] | FloatArray) -> int:
    """The arm whose cumulative range [c_{i-1}, c_i) holds u, with c_i = w_0 + ... + w_i.

    The sums are taken left to right in IEEE double, so every platform agrees. If rounding
    leaves c_{K-1} a hair below 1 and u lands above it, the last arm with positive weight
    gets u: arms of weight 0 have empty ranges and are never chosen.
    """
    if not 0.0 <= u < 1.0:
        raise ValueError(f"u must be in [0, 1), got {u}")
    cumulative = 0.0
    last_positive = -1
    for arm, weight in enumerate(weights):
        w = float(weight)
        if not (math.isfinite(w) and w >= 0.0):
            raise ValueError(f"weights must be finite and >= 0, got {w} for arm {arm}")
        if w > 0.0:
            last_positive = arm
            cumulative += w
            if u < cumulative:
                return arm
    if last_positive < 0:
        raise ValueError("weights must include a positive entry")
    return last_positive


def arms_for_uniforms(u: npt.ArrayLike, weights: Sequence[float] | FloatArray) -> IntArray:
    """`arm_for_bucket` applied to every uniform in `u` at once (the simulations' hot path).

    Same rule, same result element by element: the cumulative sums are np.cumsum's, which adds
    left to right like arm_for_bucket; `searchsorted(side="right")` finds the first c_i > u, so
    zero-weight arms (c_i == c_{i-1}) are never picked; a u at or above c_{K-1} goes to the last
    arm with positive weight.
    """
    draws = np.asarray(u, dtype=np.float64)
    if draws.size and not (draws.min() >= 0.0 and draws.max() < 1.0):
        raise ValueError("every u must be in [0, 1)")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0.0):
        raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    if not np.any(w > 0.0):
        raise ValueError("weights must include a positive entry")
    return inverse_cdf_arms(draws, w)


def inverse_cdf_arms(u: FloatArray, weights: FloatArray) -> IntArray:
    """The unchecked core of `arms_for_uniforms`, for callers whose inputs are valid by
    construction (uniforms from a generator's `random()`, weights from a `PolicyState`)."""
    arms: IntArray = np.searchsorted(np.cumsum(weights), u, side="right")
    overflow = arms >= weights.size
    if overflow.any():
        arms[overflow] = np.flatnonzero(weights > 0.0)[-1]
    return arms


def sample_arm(probabilities: Sequence[float] | FloatArray, rng: np.random.Generator) -> int:
    """Draw an arm with one uniform `rng.random()` and the inverse-CDF rule of arm_for_bucket."""
    return arm_for_bucket(float(rng.random()), probabilities)


def sampled_choice(
    probabilities: Sequence[float], *, n_arms: int, salt: str, decision_id: str
) -> Choice:
    """A bandit decision: the arm holding the decision's uniform draw of (salt, decision_id).

    Same probabilities, salt and decision_id give the same Choice in every process: that is
    what makes a logged decision replayable.
    """
    # The vector was validated when its PolicyState was built; only its length can still
    # disagree with the policy.
    if len(probabilities) != n_arms:
        raise ValueError(
            f"state probabilities must have one entry per arm ({n_arms}), got {len(probabilities)}"
        )
    vector = tuple(float(p) for p in probabilities)
    arm = arm_for_bucket(decision_uniform(salt, decision_id), vector)
    return Choice(arm=arm, propensity=vector[arm], probabilities=vector)
