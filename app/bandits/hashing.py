"""Deterministic hashing: sticky arm buckets, coverage buckets, replayable random generators.

Every value here is a function of its string arguments alone, defined byte for byte (see
docs/decision-core.md), so any process, platform, release, or another language computes the
same bucket for the same unit. Python's `hash()` is never used: it is salted per process.

Encoding (one SHA-256 per value, with a domain tag so the three uses are independent):

    message = TAG || 0x1F || UTF-8(salt) || 0x1F || UTF-8(id)
    TAG     = b"arm" | b"coverage" | b"rng"

The strings are encoded as given (no Unicode normalisation). The salt may not contain U+001F
and the tags contain no 0x1F, so the message splits back into (tag, salt, id) one way only;
the id (last) may contain anything.
"""

from __future__ import annotations

import hashlib

import numpy as np

SEPARATOR = b"\x1f"
ARM_TAG = b"arm"
COVERAGE_TAG = b"coverage"
RNG_TAG = b"rng"
DRAW_TAG = b"draw"

_MANTISSA_BITS = 53  # a double holds every multiple of 2**-53 in [0, 1) exactly


def digest(tag: bytes, salt: str, identifier: str) -> bytes:
    """SHA-256 of TAG || 0x1F || UTF-8(salt) || 0x1F || UTF-8(identifier)."""
    if not isinstance(salt, str) or not salt:
        raise ValueError("salt must be a non-empty string")
    if "\x1f" in salt:
        raise ValueError("salt must not contain U+001F (the field separator)")
    if not isinstance(identifier, str):
        raise ValueError(f"id must be a string, got {type(identifier).__name__}")
    message = tag + SEPARATOR + salt.encode("utf-8") + SEPARATOR + identifier.encode("utf-8")
    return hashlib.sha256(message).digest()


def unit_interval(hash_bytes: bytes) -> float:
    """The first 8 bytes as a big-endian unsigned integer, top 53 bits, divided by 2**53.

    The result is an exact multiple of 2**-53 in [0, 1): no rounding anywhere, so it is the
    same double on every platform.
    """
    top = int.from_bytes(hash_bytes[:8], "big") >> (64 - _MANTISSA_BITS)
    return top / (1 << _MANTISSA_BITS)


def bucket(salt: str, unit_id: str) -> float:
    """The unit's arm bucket in [0, 1); `fixed` maps it to an arm by cumulative weight ranges."""
    return unit_interval(digest(ARM_TAG, salt, unit_id))


def coverage_bucket(salt: str, unit_id: str) -> float:
    """The unit's coverage bucket in [0, 1), independent of its arm bucket (another tag).

    Because the two are independent, raising or lowering coverage only moves units in or out
    of the experiment: a unit that stays in keeps its arm.
    """
    return unit_interval(digest(COVERAGE_TAG, salt, unit_id))


def in_coverage(salt: str, unit_id: str, coverage: float) -> bool:
    """True when the unit is inside the experiment's coverage (a fraction in [0, 1])."""
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"coverage must be in [0, 1], got {coverage}")
    return coverage_bucket(salt, unit_id) < coverage


def decision_uniform(salt: str, decision_id: str) -> float:
    """The decision's one uniform draw in [0, 1), from SHA-256 of (salt, decision_id).

    Sampling an arm from an allocation needs exactly one uniform, so bandit decisions take it
    straight from the hash: as replayable as a seeded generator, at a tenth of the cost
    (building a PCG64 generator costs more than the rest of a decision).
    """
    return unit_interval(digest(DRAW_TAG, salt, decision_id))


def rng_for(salt: str, decision_id: str) -> np.random.Generator:
    """A PCG64 generator seeded by SHA-256 of (salt, decision_id): replays the decision exactly.

    The seed is the whole 256-bit digest as a big-endian integer, passed through numpy's
    SeedSequence (whose algorithm numpy keeps stable, NEP 19) into PCG64.
    """
    seed = int.from_bytes(digest(RNG_TAG, salt, decision_id), "big")
    return np.random.Generator(np.random.PCG64(seed))
