"""Prometheus metrics (prometheus-client): what the service exposes at GET /metrics.

Three kinds of series (docs/monitoring.md lists them all):

- Counters and a histogram moved by the request paths: the decide and outcome paths call the
  `record_*` functions (a dictionary lookup and a counter increment each: no I/O, no lock
  beyond the counter's own).
- Loop heartbeats: the learner and the rollout controller call `mark_learner_pass(now)` /
  `mark_controller_pass(now)` after each completed pass; the timestamp lives in process
  memory and the lag is computed when Prometheus scrapes.
- State read from the database at scrape time by `DatabaseCollector`: policy version, status,
  rollout step and learner lag per experiment. One query, cached for
  `CROUPIER_METRICS_CACHE_TTL_S` seconds, so frequent scrapes (or several Prometheus servers)
  cost the database one query per TTL at most; lags are computed from the cached timestamps
  at every scrape, so they never look younger than they are.

Several worker processes: each has its own counters. When `PROMETHEUS_MULTIPROC_DIR` is set
before the service starts, prometheus-client keeps them in memory-mapped files in that
directory and `render` aggregates every process's files (counters and histograms summed,
heartbeat timestamps the latest of any process); without it a scrape sees only the counters
of the worker that answered it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("croupier.metrics")

REGISTRY = CollectorRegistry()

# prometheus-client picks its value store when it is first imported: memory-mapped files
# shared by every worker when PROMETHEUS_MULTIPROC_DIR is set, plain memory otherwise.
MULTIPROCESS = values.ValueClass is not values.MutexValue

DECISIONS = Counter(
    "croupier_decisions",
    "Decisions served, by experiment, variant and whether the fallback served them.",
    ["experiment", "variant", "fallback"],
    registry=REGISTRY,
)
DECIDE_LATENCY = Histogram(
    "croupier_decide_latency_seconds",
    "Time to answer a decide request (one unit or a batch), from parsed body to response.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
OUTCOMES = Counter(
    "croupier_outcomes",
    "Outcomes received, by status (accepted, duplicate, late, unknown_decision, spooled).",
    ["status"],
    registry=REGISTRY,
)

# Label children by label values: `Counter.labels` validates and locks on every call; a
# dictionary hit is several times cheaper on the decide path. Bounded by the label
# cardinality the counters keep anyway.
_decision_children: dict[tuple[str, str, bool], Any] = {}
_outcome_children: dict[str, Any] = {}


def record_decisions(experiment: str, variants: list[str], *, fallback: bool) -> None:
    # A batch adds once per variant: one increment per unit would cost ~0.5 µs each.
    tally = ((variants[0], 1),) if len(variants) == 1 else Tally(variants).items()
    for variant, n in tally:
        child = _decision_children.get((experiment, variant, fallback))
        if child is None:
            child = DECISIONS.labels(experiment, variant, "true" if fallback else "false")
            _decision_children[(experiment, variant, fallback)] = child
        child.inc(n)


def record_decide_latency(seconds: float) -> None:
    DECIDE_LATENCY.observe(seconds)


def record_outcomes(statuses: list[str]) -> None:
    tally = ((statuses[0], 1),) if len(statuses) == 1 else Tally(statuses).items()
    for status, n in tally:
        child = _outcome_children.get(status)
        if child is None:
            child = _outcome_children[status] = OUTCOMES.labels(status)
        child.inc(n)


# --- Loop heartbeats ------------------------------------------------------------------------

LEARNER_HEARTBEAT = "croupier_learner_last_pass_timestamp_seconds"
CONTROLLER_HEARTBEAT = "croupier_controller_last_pass_timestamp_seconds"
CONTROLLER_LAG = "croupier_controller_lag_seconds"
_HEARTBEAT_HELP = {
    LEARNER_HEARTBEAT: "Unix time the learner last completed a pass in this service "
    "(absent until one has).",
    CONTROLLER_HEARTBEAT: "Unix time the rollout controller last completed a pass in this "
    "service (absent until one has).",
}
_last_pass: dict[str, float] = {}
# Multiprocess mode: the heartbeats also go to the shared files, where the latest of all
# processes wins (only the leader process runs the learner and the controller).
_heartbeat_gauges = (
    {
        name: Gauge(name, doc, multiprocess_mode="max", registry=None)
        for name, doc in _HEARTBEAT_HELP.items()
    }
    if MULTIPROCESS
    else {}
)


def _seconds(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()
    return float(now)


def _mark(name: str, now: datetime | float | None) -> None:
    moment = _seconds(now)
    _last_pass[name] = moment
    gauge = _heartbeat_gauges.get(name)
    if gauge is not None:
        gauge.set(moment)


def mark_learner_pass(now: datetime | float | None = None) -> None:
    """Call after each completed learner pass (`now`: the pass's time; None: the clock)."""
    _mark(LEARNER_HEARTBEAT, now)


def mark_controller_pass(now: datetime | float | None = None) -> None:
    """Call after each completed rollout-controller pass (`now`: as for the learner)."""
    _mark(CONTROLLER_HEARTBEAT, now)


def _controller_lag(last: float | None, now: float) -> Iterator[Metric]:
    if last is not None:
        yield GaugeMetricFamily(
            CONTROLLER_LAG,
            "Seconds since the rollout controller last completed a pass (absent until one has).",
            value=max(0.0, now - last),
        )


class HeartbeatCollector(Collector):
    """The last-pass timestamps of this process and the controller's lag, at scrape time."""

    def collect(self) -> Iterable[Metric]:
        for name, doc in _HEARTBEAT_HELP.items():
            if name in _last_pass:
                yield GaugeMetricFamily(name, doc, value=_last_pass[name])
        yield from _controller_lag(_last_pass.get(CONTROLLER_HEARTBEAT), time.time())

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily(name, doc)
            for name, doc in (*_HEARTBEAT_HELP.items(), (CONTROLLER_LAG, ""))
        ]


class MultiprocessCollector(Collector):
    """Every process's counters, histograms and heartbeats from PROMETHEUS_MULTIPROC_DIR,
    plus the controller's lag from the latest heartbeat of any process."""

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        last: float | None = None
        shared = MultiProcessCollector(None)  # type: ignore[no-untyped-call]
        for family in shared.collect():  # type: ignore[no-untyped-call]
            if family.name == CONTROLLER_HEARTBEAT and family.samples:
                last = max(sample.value for sample in family.samples)
            yield family
        yield from _controller_lag(last, time.time())


# --- State read from the database -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    key: str
    status: str
    policy_version: int
    learning: bool
    update_interval_s: float
    last_version_at: float | None  # Unix time the latest policy version was published
    rollout_step: int  # step index + 1 of a ramping / awaiting-approval rollout, else 0


ACTIVE_ROLLOUT_STATES = ("ramping", "awaiting_approval")


def read_state(session: Session) -> list[ExperimentRow]:
    """Every experiment but the archived ones, with its latest policy version's time and its
    latest rollout: one query (correlated subqueries on indexed columns)."""
    # Imported here: the request paths import this module, which must not pull in (or
    # cycle back into) the service packages.
    from app.experiments.models import Experiment
    from app.learning.models import PolicyVersion
    from app.learning.service import LEARNING_POLICIES
    from app.rollouts.models import Rollout

    last_version = (
        select(func.max(PolicyVersion.created_at))
        .where(PolicyVersion.experiment_id == Experiment.id)
        .correlate(Experiment)
        .scalar_subquery()
    )
    latest_rollout = (
        select(func.max(Rollout.id))
        .where(Rollout.experiment_id == Experiment.id)
        .correlate(Experiment)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Experiment.key,
            Experiment.status,
            Experiment.policy_version,
            Experiment.policy,
            Experiment.update_interval_s,
            last_version,
            Rollout.state,
            Rollout.step,
        )
        .outerjoin(Rollout, Rollout.id == latest_rollout)
        .where(Experiment.status != "archived")
        .order_by(Experiment.id)
    )
    return [
        ExperimentRow(
            key=key,
            status=status,
            policy_version=version,
            learning=(policy or {}).get("type") in LEARNING_POLICIES,
            update_interval_s=interval,
            last_version_at=last.timestamp() if last is not None else None,
            rollout_step=step + 1 if state in ACTIVE_ROLLOUT_STATES and step is not None else 0,
        )
        for key, status, version, policy, interval, last, state, step in rows
    ]


def _exposed_statuses() -> tuple[str, ...]:
    from app.experiments.models import STATUSES

    return tuple(s for s in STATUSES if s != "archived")


class DatabaseCollector(Collector):
    """Per-experiment gauges from the database, read at scrape time and cached for `ttl_s`.

    Unbound (no database yet), it yields nothing. If the query fails, the scrape still
    succeeds: `croupier_metrics_database_ok` is 0 and the per-experiment series are absent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: sessionmaker[Session] | None = None
        self._ttl_s = 5.0
        self._rows: list[ExperimentRow] = []
        self._read_at: float | None = None  # monotonic time of the cached read
        self._ok = True
        self.queries = 0  # database reads so far (tests check the cache holds)

    def bind(self, sessions: sessionmaker[Session], ttl_s: float) -> None:
        """Read from `sessions` from now on (cheap when unchanged; a new source drops the
        cache)."""
        if sessions is self._sessions and ttl_s == self._ttl_s:
            return
        with self._lock:
            self._sessions = sessions
            self._ttl_s = ttl_s
            self._read_at = None

    def _state(self) -> tuple[list[ExperimentRow], bool] | None:
        with self._lock:
            if self._sessions is None:
                return None
            fresh = self._read_at is not None and time.monotonic() - self._read_at < self._ttl_s
            if not fresh:
                self.queries += 1
                try:
                    with self._sessions() as session:
                        self._rows = read_state(session)
                    self._ok = True
                except Exception:
                    log.warning("metrics: reading experiment state failed", exc_info=True)
                    self._rows, self._ok = [], False
                self._read_at = time.monotonic()
            return self._rows, self._ok

    def collect(self) -> Iterable[Metric]:
        state = self._state()
        if state is None:
            return
        rows, ok = state
        now = time.time()
        yield GaugeMetricFamily(
            "croupier_metrics_database_ok",
            "1 when the per-experiment gauges could be read from the database, else 0.",
            value=1.0 if ok else 0.0,
        )
        version = GaugeMetricFamily(
            "croupier_policy_version",
            "Number of the policy version each experiment serves (0 before it starts).",
            labels=["experiment"],
        )
        status = GaugeMetricFamily(
            "croupier_experiment_status",
            "1 for the experiment's current status, 0 for the others (archived experiments "
            "are left out).",
            labels=["experiment", "status"],
        )
        rollout = GaugeMetricFamily(
            "croupier_rollout_step",
            "Step (1-based) of the experiment's rollout while it ramps or awaits approval; "
            "0 when no rollout is in progress.",
            labels=["experiment"],
        )
        lag = GaugeMetricFamily(
            "croupier_learner_lag_seconds",
            "Seconds since the learner last published a policy version, for running "
            "learning experiments (thompson, epsilon_greedy, ucb1, contextual).",
            labels=["experiment"],
        )
        interval = GaugeMetricFamily(
            "croupier_learner_update_interval_seconds",
            "The experiment's update_interval_s, for running learning experiments: compare "
            "croupier_learner_lag_seconds with it.",
            labels=["experiment"],
        )
        statuses = _exposed_statuses()
        for row in rows:
            version.add_metric([row.key], row.policy_version)
            for name in statuses:
                status.add_metric([row.key, name], 1.0 if row.status == name else 0.0)
            rollout.add_metric([row.key], row.rollout_step)
            if row.status == "running" and row.learning and row.last_version_at is not None:
                lag.add_metric([row.key], max(0.0, now - row.last_version_at))
                interval.add_metric([row.key], row.update_interval_s)
        yield from (version, status, rollout, lag, interval)

    def describe(self) -> Iterable[Metric]:
        names = (
            "croupier_metrics_database_ok",
            "croupier_policy_version",
            "croupier_experiment_status",
            "croupier_rollout_step",
            "croupier_learner_lag_seconds",
            "croupier_learner_update_interval_seconds",
        )
        return [GaugeMetricFamily(name, "") for name in names]


DATABASE = DatabaseCollector()
REGISTRY.register(DATABASE)
REGISTRY.register(HeartbeatCollector())


def render(sessions: sessionmaker[Session] | None = None, *, ttl_s: float = 5.0) -> bytes:
    """The exposition text of every series (blocking: may read the database)."""
    if sessions is not None:
        DATABASE.bind(sessions, ttl_s)
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    registry.register(MultiprocessCollector())
    registry.register(DATABASE)
    return generate_latest(registry)


__all__ = [
    "CONTENT_TYPE_LATEST",
    "DATABASE",
    "DECIDE_LATENCY",
    "DECISIONS",
    "MULTIPROCESS",
    "OUTCOMES",
    "REGISTRY",
    "DatabaseCollector",
    "Gauge",
    "mark_controller_pass",
    "mark_learner_pass",
    "read_state",
    "record_decide_latency",
    "record_decisions",
    "record_outcomes",
    "render",
]
