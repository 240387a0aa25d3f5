"""Checks on policy settings (PolicyConfigError naming the setting) and on learned statistics.

Settings arrive from JSON, so a number may be a bool, a string, NaN or infinite; each check
says what was expected and what was received, in words a user can act on.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from app.bandits.base import ArmStats, PolicyConfigError


def finite_number(field: str, value: object) -> float:
    """`value` as a float; it must be a real number (not a bool) and finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PolicyConfigError(field, f"{field} must be a number, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int too large for a double
        result = math.inf
    if not math.isfinite(result):
        raise PolicyConfigError(field, f"{field} must be a finite number, got {value!r}")
    return result


def positive_number(field: str, value: object) -> float:
    """A finite number > 0."""
    result = finite_number(field, value)
    if result <= 0.0:
        raise PolicyConfigError(field, f"{field} must be > 0, got {result:g}")
    return result


def arm_count(field: str, value: object) -> int:
    """A whole number of arms, at least 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PolicyConfigError(field, f"{field} must be a whole number, got {value!r}")
    count = int(value)
    if count < 1:
        raise PolicyConfigError(field, f"at least one arm is required, got {count}")
    return count


def one_of(field: str, value: object, options: Collection[str]) -> str:
    """A string among `options`."""
    if not isinstance(value, str) or value not in options:
        expected = ", ".join(repr(option) for option in options)
        raise PolicyConfigError(field, f"{field} must be one of {expected}, got {value!r}")
    return value


def floor_fits(min_probability: float, n_arms: int) -> None:
    """The exploration floor must leave a non-negative share: K * f <= 1."""
    if min_probability <= 0.0:
        raise PolicyConfigError(
            "min_probability",
            f"min_probability must be > 0 so that every arm keeps being explored, "
            f"got {min_probability:g}",
        )
    if min_probability * n_arms > 1.0 + 1e-12:
        raise PolicyConfigError(
            "min_probability",
            "min_probability * number of arms must be <= 1, "
            f"got {min_probability:g} * {n_arms} = {min_probability * n_arms:g}",
        )


def stats_arrays(
    stats: Sequence[ArmStats], n_arms: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(counts, totals, sums of squares) as float arrays, one entry per arm.

    A wrong length is a caller's bug (the service passes one ArmStats per arm), so ValueError.
    """
    if len(stats) != n_arms:
        raise ValueError(f"stats must have one entry per arm ({n_arms}), got {len(stats)}")
    counts = np.array([s.count for s in stats], dtype=np.float64)
    totals = np.array([s.total for s in stats], dtype=np.float64)
    sum_squares = np.array([s.sum_squares for s in stats], dtype=np.float64)
    return counts, totals, sum_squares


def json_floats(
    values: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]
) -> list[float | None]:
    """Plain-JSON list: floats where `present`, null elsewhere (JSON has no NaN or inf)."""
    return [
        float(v) if ok else None for v, ok in zip(values.tolist(), present.tolist(), strict=True)
    ]
