"""Deciding: pick a variant from the in-memory policy, log the exposure, answer.

Status decides who answers: a running (or rolled-back) experiment's policy (experimental
decisions); a rolling-out one the current step's split, sticky per unit like an A/B test; a
paused one serves its control and a concluded or archived one its winner (or control), both
logged with propensity 1 and `experimental: false`. Units outside `coverage` get the control,
non-experimental.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from app.bandits import arm_for_bucket, bucket, in_coverage
from app.bandits.base import Choice
from app.decisions.cache import ServedExperiment
from app.decisions.context import check_context
from app.decisions.schemas import DecideRequest
from app.errors import Conflict, Invalid


def check_items(items: Sequence[DecideRequest], *, max_features: int, batch: bool) -> None:
    """Rules the schema cannot express; 422 naming the item before anything is written."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"body.items[{i}]" if batch else "body"
        if item.context is not None:
            check_context(item.context, where=f"{where}.context", max_features=max_features)
        if item.decision_id is not None:
            if item.decision_id in seen:
                raise Invalid(
                    f"{where}.decision_id",
                    "unique",
                    f"decision_id {item.decision_id!r} appears twice in this request",
                )
            seen.add(item.decision_id)


def _fixed_answer(served: ServedExperiment, arm: int) -> Choice:
    probabilities = tuple(1.0 if i == arm else 0.0 for i in range(len(served.variants)))
    return Choice(arm, 1.0, probabilities)


def choose(
    served: ServedExperiment, item: DecideRequest, decision_id: str, *, where: str = "body"
) -> tuple[Choice, bool]:
    """The choice for one unit and whether the policy drew it (experimental)."""
    if served.status == "draft" or served.version == 0:  # never started (maybe archived)
        raise Conflict(
            f"experiment {served.key!r} was never started; start it before asking for decisions",
            kind="not-running",
        )
    if served.status == "paused":
        return _fixed_answer(served, served.control), False
    if served.status in ("concluded", "archived"):
        arm = served.winner if served.winner is not None else served.control
        return _fixed_answer(served, arm), False
    if served.coverage < 1.0 and not in_coverage(served.salt, item.unit_id, served.coverage):
        return _fixed_answer(served, served.control), False
    assert served.state is not None, "a running experiment always has a policy version"
    if served.status == "rolling_out":  # the step's split, sticky per unit (app.rollouts)
        split = served.state.probabilities
        arm = arm_for_bucket(bucket(served.salt, item.unit_id), split)
        return Choice(arm, split[arm], split), True
    try:
        choice = served.policy.choose(
            served.state,
            salt=served.salt,
            unit_id=item.unit_id,
            decision_id=decision_id,
            context=item.context,
        )
    except ValueError as exc:  # a context the policy cannot use (contextual: featurisation)
        raise Invalid(f"{where}.context", "context", str(exc)) from None
    return choice, True


class _IdSource:
    """Decision ids, time-ordered like UUIDv7: 12 hex digits of Unix milliseconds, then 20 of
    BLAKE2b, keyed with 32 secret random bytes, of a counter. Unique (the counter) and
    unpredictable (80 bits of a keyed PRF), so nobody can claim an id before it is served; at
    a microsecond each and no system call. Ordered by time, so new rows land at the right edge
    of the primary-key index instead of on random pages (which, after every checkpoint, cost
    PostgreSQL a full-page image in the WAL per page touched). A forked child draws a new key."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.key = os.urandom(32)
        self.counter = itertools.count()

    def next(self) -> str:
        message = next(self.counter).to_bytes(8, "big")
        random_part = hashlib.blake2b(message, key=self.key, digest_size=10).hexdigest()
        return f"{time.time_ns() // 1_000_000:012x}{random_part}"


_ids = _IdSource()


def new_decision_id() -> str:
    """32 hex digits, unique and unpredictable."""
    return _ids.next()


def decision_row(
    served: ServedExperiment, item: DecideRequest, *, now: datetime, where: str = "body"
) -> dict[str, Any]:
    decision_id = item.decision_id or new_decision_id()
    choice, experimental = choose(served, item, decision_id, where=where)
    return {
        "id": decision_id,
        "experiment_id": served.id,
        "unit_id": item.unit_id,
        "variant_id": served.variants[choice.arm].id,
        "arm": choice.arm,
        "propensity": choice.propensity,
        "probabilities": {
            v.key: p for v, p in zip(served.variants, choice.probabilities, strict=True)
        },
        "policy_version": served.version,
        "context": item.context,
        "decided_at": now,
        "fallback": False,
        "experimental": experimental,
    }


def response(served: ServedExperiment, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The answer, shaped as schemas.DecideResponse (built as a dict: this is the hot path)."""
    variant = served.variants[stored["arm"]]
    return {
        "decision_id": stored["id"],
        "variant": variant.key,
        "payload": variant.payload,
        "propensity": stored["propensity"],
        "policy_version": stored["policy_version"],
        "fallback": bool(stored["fallback"]),
        "experimental": bool(stored["experimental"]),
    }
