"""Prometheus metrics (prometheus-client): what the service exposes at GET /metrics.

The decide and outcome paths call the `record_*` functions (a counter increment each: no I/O);
gauges about learner, controller, policy versions and rollouts are set by those loops.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

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


def record_decisions(experiment: str, variants: list[str], *, fallback: bool) -> None:
    flag = "true" if fallback else "false"
    for variant in variants:
        DECISIONS.labels(experiment, variant, flag).inc()


def record_decide_latency(seconds: float) -> None:
    DECIDE_LATENCY.observe(seconds)


def record_outcomes(statuses: list[str]) -> None:
    for status in statuses:
        OUTCOMES.labels(status).inc()


__all__ = [
    "DECIDE_LATENCY",
    "DECISIONS",
    "OUTCOMES",
    "REGISTRY",
    "Gauge",
    "record_decide_latency",
    "record_decisions",
    "record_outcomes",
]
