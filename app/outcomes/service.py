"""Recording outcomes: join to the decision, classify, store once.

Per item: `unknown_decision` (no such decision; nothing stored), `duplicate` (this outcome was
already stored; never counted twice), `late` (stored and flagged: it arrived after the
decision's reward window closed, so the learner never uses it), or `accepted`. While the
database is away (app.decisions.fallback) outcomes are `spooled`: written to the local spool
and stored by `replay` once it is back, with the same rules (and deduplication).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.decisions.models import Decision
from app.errors import Invalid
from app.experiments import service as experiments_service
from app.experiments.models import Experiment
from app.outcomes.models import Outcome
from app.outcomes.schemas import OutcomeIn, OutcomeResult, Status

CHUNK = 500
CLOCK_SKEW = timedelta(minutes=1)
"""How far an outcome's timestamp may precede its decision (clients' clocks differ)."""


@dataclass(frozen=True, slots=True)
class _Joined:
    experiment_id: int
    decided_at: datetime
    window_s: float
    primary_metric: str
    reward_range: tuple[float, float] | None


def dedup_key(item: OutcomeIn) -> str:
    if item.outcome_id is not None:
        return item.outcome_id
    # The instant in UTC: the same moment written with another offset is the same outcome.
    stamp = item.timestamp.astimezone(UTC).isoformat() if item.timestamp is not None else ""
    return hashlib.sha256(f"{item.value!r}|{stamp}".encode()).hexdigest()[:40]


def _join(session: Session, ids: Sequence[str]) -> dict[str, _Joined]:
    joined: dict[str, _Joined] = {}
    experiments: dict[int, Experiment] = {}
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(Decision.id, Decision.experiment_id, Decision.decided_at).where(
                Decision.id.in_(ids[start : start + CHUNK])
            )
        )
        for decision_id, experiment_id, decided_at in rows:
            if experiment_id not in experiments:
                experiments[experiment_id] = session.get_one(Experiment, experiment_id)
            e = experiments[experiment_id]
            joined[decision_id] = _Joined(
                experiment_id,
                decided_at,
                e.reward_window_s,
                e.primary_metric,
                experiments_service.reward_range(e),
            )
    return joined


def record(
    *, session: Session, items: Sequence[OutcomeIn], now: datetime, batch: bool
) -> list[OutcomeResult]:
    """Validate every item first (422 writes nothing), then store the new ones."""
    joined = _join(session, list({item.decision_id for item in items}))
    for i, item in enumerate(items):
        found = joined.get(item.decision_id)
        if found is None:
            continue
        if item.timestamp is not None and item.timestamp < found.decided_at - CLOCK_SKEW:
            raise Invalid(
                f"body.items[{i}].timestamp" if batch else "body.timestamp",
                "before_decision",
                f"the outcome is timestamped {item.timestamp.isoformat()}, before its decision "
                f"({found.decided_at.isoformat()})",
            )
        if found.reward_range is None:
            continue
        low, high = found.reward_range
        metric = item.metric or found.primary_metric
        if metric == found.primary_metric and not low <= item.value <= high:
            where = f"body.items[{i}].value" if batch else "body.value"
            raise Invalid(
                where,
                "reward_range",
                f"this experiment's rewards are Bernoulli, in [{low:g}, {high:g}]; "
                f"got {item.value}",
            )
    keys = [
        (item.decision_id, item.metric or found.primary_metric, dedup_key(item))
        if (found := joined.get(item.decision_id))
        else None
        for item in items
    ]
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item, key in zip(items, keys, strict=True):
        if key is None or key in rows:  # unknown, or the same outcome twice in this request
            continue
        rows[key] = _row(item, key, joined[item.decision_id], received_at=now, judged_at=now)
    stored = _insert_new(session, [rows[key] for key in sorted(rows)])
    results: list[OutcomeResult] = []
    first_seen: set[tuple[str, str, str]] = set()
    for item, key in zip(items, keys, strict=True):
        status: Status
        if key is None:
            status = "unknown_decision"
        elif key in stored and key not in first_seen:
            status = "late" if rows[key]["late"] else "accepted"
        else:
            status = "duplicate"
        if key is not None:
            first_seen.add(key)
        results.append(
            OutcomeResult(
                decision_id=item.decision_id,
                metric=key[1] if key is not None else item.metric,
                status=status,
            )
        )
    return results


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Insert the outcomes not stored yet; returns the keys actually inserted.

    ON CONFLICT DO NOTHING makes a concurrent request's copy of the same outcome a duplicate
    here rather than an error, and RETURNING says which rows were new. Rows arrive sorted by
    key, so two transactions lock the unique index in the same order (no deadlock).
    """
    if not rows:
        return set()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(Outcome)
        .on_conflict_do_nothing(index_elements=["decision_id", "metric", "dedup_key"])
        .returning(Outcome.decision_id, Outcome.metric, Outcome.dedup_key)
    )
    inserted: set[tuple[str, str, str]] = set()
    for start in range(0, len(rows), CHUNK):
        result = session.execute(stmt, rows[start : start + CHUNK])
        inserted.update((a, b, c) for a, b, c in result)
    return inserted


def counts(results: Sequence[OutcomeResult]) -> dict[Status, int]:
    """Every status, `spooled` only when some were (it happens only while degraded)."""
    tally = Counter(str(r.status) for r in results)
    statuses: tuple[Status, ...] = ("accepted", "duplicate", "late", "unknown_decision")
    counted: dict[Any, int] = {s: tally.get(s, 0) for s in statuses}
    if tally.get("spooled"):
        counted["spooled"] = tally["spooled"]
    return counted


@dataclass(frozen=True, slots=True)
class Spooled:
    """An outcome the service acknowledged as `spooled`, and when it received it."""

    item: OutcomeIn
    received_at: datetime


def replay(
    *, session: Session, spooled: Sequence[Spooled], now: datetime, max_delay_s: float | None
) -> list[str]:
    """Store spooled outcomes (in order; idempotent: a replayed outcome is a `duplicate`).

    Returns a status per item: `accepted`, `late`, `duplicate`, `unknown_decision` (its decision
    is not in the database, maybe not replayed yet: nothing stored) or `invalid` (a rule the
    live path answers with 422: timestamp before its decision, reward out of range; dropped).
    `received_at` is when the service received it; it is `late` when that was after the reward
    window, or when it is stored now too late for the learner to have waited for it (later
    than `max_delay_s` after the window closed, the same bound the live path enforces)."""
    joined = _join(session, list({s.item.decision_id for s in spooled}))
    slack = timedelta(seconds=max_delay_s or 0.0)
    statuses: list[str] = []
    keys: list[tuple[str, str, str] | None] = []
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for s in spooled:
        item = s.item
        found = joined.get(item.decision_id)
        key: tuple[str, str, str] | None = None
        if found is None:
            statuses.append("unknown_decision")
        elif (item.timestamp is not None and item.timestamp < found.decided_at - CLOCK_SKEW) or (
            found.reward_range is not None
            and (item.metric or found.primary_metric) == found.primary_metric
            and not found.reward_range[0] <= item.value <= found.reward_range[1]
        ):
            statuses.append("invalid")
        else:
            statuses.append("")
            key = (item.decision_id, item.metric or found.primary_metric, dedup_key(item))
            if key not in rows:
                rows[key] = _row(
                    item,
                    key,
                    found,
                    received_at=s.received_at,
                    judged_at=max(s.received_at, now - slack),
                )
        keys.append(key)
    stored = _insert_new(session, [rows[key] for key in sorted(rows)])
    first_seen: set[tuple[str, str, str]] = set()
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in stored and key not in first_seen:
            statuses[i] = "late" if rows[key]["late"] else "accepted"
        else:
            statuses[i] = "duplicate"
        first_seen.add(key)
    return statuses


def _row(
    item: OutcomeIn,
    key: tuple[str, str, str],
    found: Any,
    *,
    received_at: datetime,
    judged_at: datetime,
) -> dict[str, Any]:
    """The outcome row: late when it is judged (received, or replayed) after the decision's
    reward window closed, or says it occurred after it."""
    window_end = found.decided_at + timedelta(seconds=found.window_s)
    occurred = item.timestamp or received_at
    return {
        "decision_id": item.decision_id,
        "experiment_id": found.experiment_id,
        "metric": key[1],
        "value": item.value,
        "occurred_at": occurred,
        "received_at": received_at,
        "late": judged_at > window_end or occurred > window_end,
        "dedup_key": key[2],
    }
