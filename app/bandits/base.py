"""The decision core's vocabulary: arm statistics, a policy's state, a choice, the Policy role.

Everything here is pure (numpy only). The service, the simulations and the notebooks all drive
policies through this interface, so a decision replayed offline is the decision served online.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

JSONValue = Any  # JSON-serialisable value (dict/list/str/float/int/bool/None)


class PolicyConfigError(ValueError):
    """A policy setting is invalid. `field` names the setting, the message states the rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Additive sufficient statistics of one arm's rewards: n, sum(y), sum(y^2)."""

    count: int = 0
    total: float = 0.0
    sum_squares: float = 0.0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if not (math.isfinite(self.total) and math.isfinite(self.sum_squares)):
            raise ValueError("total and sum_squares must be finite")

    def __add__(self, other: ArmStats) -> ArmStats:
        return ArmStats(
            self.count + other.count,
            self.total + other.total,
            self.sum_squares + other.sum_squares,
        )

    @property
    def mean(self) -> float:
        """Sample mean; NaN for an empty arm (callers must handle count == 0)."""
        return self.total / self.count if self.count else math.nan

    def to_json(self) -> dict[str, JSONValue]:
        return {"count": self.count, "total": self.total, "sum_squares": self.sum_squares}

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> ArmStats:
        return cls(int(data["count"]), float(data["total"]), float(data["sum_squares"]))


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What one policy version stores: the allocation deciders sample from, and why.

    `probabilities[i]` is the probability that arm i is served (for `fixed`, the weight of arm
    i's hash range). `details` holds JSON-serialisable diagnostics (posterior parameters, UCB
    indices, ...) that explain the allocation; deciders never need them.
    """

    probabilities: tuple[float, ...]
    details: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked once here, so choosing (the hot path) can trust the vector.
        p = self.probabilities
        if not p:
            raise ValueError("state probabilities must be non-empty")
        if not all(math.isfinite(x) and x >= 0.0 for x in p):
            raise ValueError(f"state probabilities must be finite and >= 0, got {list(p)}")
        if abs(math.fsum(p) - 1.0) > 1e-9:
            raise ValueError(f"state probabilities must sum to 1, got {math.fsum(p)!r}")

    def to_json(self) -> dict[str, JSONValue]:
        return {"probabilities": list(self.probabilities), "details": dict(self.details)}

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> PolicyState:
        return cls(tuple(float(p) for p in data["probabilities"]), dict(data.get("details", {})))


@dataclass(frozen=True, slots=True)
class Choice:
    """One decision: the served arm, the probability it had, and the whole vector."""

    arm: int
    propensity: float
    probabilities: tuple[float, ...]


class Policy(Protocol):
    """One role for every policy, driven alike by the service, replay and simulation."""

    kind: ClassVar[str]

    # Read-only, so that frozen dataclasses (the policies' form) satisfy the protocol under
    # mypy --strict; callers only ever read it.
    @property
    def n_arms(self) -> int:
        """Number of arms; every probability vector of this policy has this length."""
        ...

    def initial_state(self) -> PolicyState:
        """The state served before any outcome has been learned from."""
        ...

    def update(self, stats: Sequence[ArmStats]) -> PolicyState:
        """The next state from cumulative per-arm statistics (one entry per arm, in arm order)."""
        ...

    def choose(
        self,
        state: PolicyState,
        *,
        salt: str,
        unit_id: str,
        decision_id: str,
        context: Mapping[str, JSONValue] | None = None,
    ) -> Choice:
        """Pick an arm. Deterministic given its arguments (replayable)."""
        ...
