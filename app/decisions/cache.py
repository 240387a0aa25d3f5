"""Each process keeps every served experiment's policy in memory.

A decide request never reads the policy from the database. Once per
`CROUPIER_POLICY_CHECK_INTERVAL_S` one query compares each cached experiment's `revision` (bumped
on every configuration, status or policy-version change) and reloads only what changed; changes
made through this process are seen at once (the router invalidates the entry).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.bandits import ContextualPolicy
from app.bandits.base import Policy, PolicyState
from app.experiments.models import Experiment
from app.experiments.policy import build
from app.learning import service as learning_service

log = logging.getLogger("croupier.cache")


@dataclass(frozen=True, slots=True)
class ServedVariant:
    id: int
    key: str
    payload: Any


@dataclass(frozen=True, slots=True)
class ServedExperiment:
    """Everything the decide path needs, immutable: swapped whole, never mutated."""

    id: int
    key: str
    status: str
    salt: str
    coverage: float
    revision: int
    variants: tuple[ServedVariant, ...]
    control: int
    winner: int | None
    policy: Policy
    state: PolicyState | None
    version: int


def load(session: Session, key: str) -> ServedExperiment | None:
    experiment = session.scalar(select(Experiment).where(Experiment.key == key))
    if experiment is None:
        return None
    version = learning_service.latest(session=session, experiment_id=experiment.id)
    keys = [v.key for v in experiment.variants]
    policy = build(experiment)
    if isinstance(policy, ContextualPolicy):  # serves the version's model (loaded here, once)
        policy = policy.bind(version.model if version is not None else None)
    return ServedExperiment(
        id=experiment.id,
        key=experiment.key,
        status=experiment.status,
        salt=experiment.salt,
        coverage=experiment.coverage,
        revision=experiment.revision,
        variants=tuple(ServedVariant(v.id, v.key, v.payload) for v in experiment.variants),
        control=next(i for i, v in enumerate(experiment.variants) if v.is_control),
        winner=keys.index(experiment.winner) if experiment.winner in keys else None,
        policy=policy,
        state=PolicyState.from_json(version.state) if version is not None else None,
        version=version.number if version is not None else 0,
    )


class PolicyCache:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._entries: dict[str, ServedExperiment] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> ServedExperiment | None:
        """Read one experiment from the database (blocking) and cache it."""
        with self._sessions() as session:
            served = load(session, key)
        with self._lock:
            if served is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = served
        return served

    async def get(self, key: str) -> ServedExperiment | None:
        served = self._entries.get(key)
        if served is None:
            served = await asyncio.to_thread(self.load, key)
        return served

    def peek(self, key: str) -> ServedExperiment | None:
        """The cached entry, never touching the database (the fallback's view)."""
        return self._entries.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def refresh(self) -> int:
        """The cheap check: one query for all cached revisions; reload what changed."""
        cached = dict(self._entries)
        if not cached:
            return 0
        with self._sessions() as session:
            rows = session.execute(
                select(Experiment.key, Experiment.revision).where(Experiment.key.in_(list(cached)))
            )
            current = dict(rows.all())  # rows.all(): a Result itself looks like a mapping
        stale = [k for k, served in cached.items() if current.get(k) != served.revision]
        for key in stale:
            self.load(key)
        return len(stale)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("policy refresh failed; serving cached policies")
