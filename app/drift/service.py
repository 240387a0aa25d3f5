"""Drift checks of running experiments: a reference window against the recent window.

For each experiment that is `running` or `rolling_out` (docs/drift.md has the details):

* reference window: the first `drift_reference_s` after the experiment started;
  recent window: the last `drift_recent_s` before `now`. They must not overlap, and each must
  hold at least `drift_min_decisions` experimental decisions, else the check is skipped.
* Context features (`psi_drift`): the contexts of the most recent `drift_max_rows`
  experimental decisions of each window (an indexed range scan with LIMIT, never every row),
  namespaced features flattened to "ns.feature". PSI per feature (app.stats.drift); an alert
  when the band is "significant" (PSI >= 0.25) AND the PSI is beyond sampling noise
  (chi-square p < `drift_alpha`). Every feature's PSI goes to the gauge croupier_feature_psi.
* Reward rate per arm (`reward_drift`): the primary metric (the reward as the learner defines
  it, `app.learning.service.metric_value`, default reward when no outcome came) of closed
  decisions only, reference window against the last `drift_recent_s` of closed decisions;
  Welch t or two-proportion z per arm, Holm-adjusted across arms, alert when p_adj < alpha.
* SRM (`srm`): the recent window's sample, observed arm counts against the sum of the logged
  probability vectors (eq. (1) of app.stats.srm), alert when p < 0.001.

Reads happen in a read-only session (on SQLite a write transaction would hold the one write
lock and stall decisions); each experiment's alerts are then raised in one transaction of
their own (`app.alerts.service.raise_alert`: one open alert per key, webhook in the same
transaction). One experiment failing is logged and does not stop the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import weakref
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from prometheus_client import Counter, Gauge
from sqlalchemy import func, null, select
from sqlalchemy.orm import Session, sessionmaker

from app.alerts.service import raise_alert
from app.db import transaction
from app.decisions.models import Decision
from app.experiments.models import Experiment
from app.learning.service import metric_value
from app.metrics import REGISTRY
from app.reports.queries import analysed
from app.settings import Settings, get_settings
from app.stats.common import BINARY_TOLERANCE
from app.stats.drift import (
    DEFAULT_BINS,
    PsiResult,
    RewardDrift,
    categorical_psi,
    numeric_psi,
    reward_drift,
)
from app.stats.srm import DEFAULT_THRESHOLD as SRM_THRESHOLD
from app.stats.srm import SrmResult, srm_check_log
from app.stats.sufficient import SampleStats, StatsInputError

log = logging.getLogger("croupier.drift")

CHECKED_STATUSES = ("running", "rolling_out")
MAX_FEATURES = 256
"""Most features checked per experiment: those present in the most sampled contexts."""
MAX_KEY = 200
"""Length of alerts.key."""

FEATURE_PSI = Gauge(
    "croupier_feature_psi",
    "Population stability index of a context feature: recent window against reference window.",
    ["experiment", "feature"],
    registry=REGISTRY,
)
SRM_P_VALUE = Gauge(
    "croupier_drift_srm_p_value",
    "SRM p-value of the recent window (observed arms against logged probabilities).",
    ["experiment"],
    registry=REGISTRY,
)
DRIFT_ALERTS = Counter(
    "croupier_drift_alerts",
    "Alerts raised by the drift checks, by kind (psi_drift, reward_drift, srm).",
    ["kind"],
    registry=REGISTRY,
)
_last_pass: weakref.WeakKeyDictionary[sessionmaker[Session], datetime] = weakref.WeakKeyDictionary()
"""When the last pass began, per session factory (the throttle of run_drift_checks)."""
_gauged: dict[str, set[str]] = {}
"""experiment key -> its features with a croupier_feature_psi series (and, by being a key,
maybe a croupier_drift_srm_p_value series), to drop the series of experiments not checked."""


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    feature: str
    result: PsiResult
    alert: bool
    """Significant and beyond sampling noise: an alert is due (raised unless one is open)."""


@dataclass
class DriftCheck:
    """What one experiment's check found. `alerts` holds the keys of alerts newly raised."""

    experiment: str
    status: Literal["checked", "skipped", "failed"]
    reason: str | None = None
    windows: dict[str, str] = field(default_factory=dict)
    features: list[FeatureDrift] = field(default_factory=list)
    reward: RewardDrift | None = None
    reward_note: str | None = None
    srm: SrmResult | None = None
    srm_note: str | None = None
    alerts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Alert:
    kind: str
    key: str
    severity: str
    message: str
    evidence: dict[str, Any]


def run_drift_checks(
    *,
    sessions: sessionmaker[Session],
    now: datetime,
    settings: Settings | None = None,
    force: bool = False,
) -> list[DriftCheck]:
    """One drift pass over every running or rolling-out experiment; see the module docstring.

    Meant for the leader-locked controller loop, which may call it every tick: unless `force`,
    it returns [] without touching the database when the last pass on these `sessions` began
    less than `drift_check_interval_s` before `now`. Cost per experiment: two indexed range
    scans of at most `drift_max_rows` decisions (their JSON contexts parsed in Python), one
    aggregate over at most 2 x `drift_max_rows` closed decisions (an outcome index lookup
    each), and a write transaction only when an alert is due."""
    config = settings or get_settings()
    last = _last_pass.get(sessions)
    if (
        not force
        and last is not None
        and (now - last).total_seconds() < config.drift_check_interval_s
    ):
        return []
    _last_pass[sessions] = now
    with sessions() as session:
        keys = list(
            session.scalars(
                select(Experiment.key)
                .where(Experiment.status.in_(CHECKED_STATUSES))
                .order_by(Experiment.id)
            )
        )
    results = []
    for key in keys:
        try:
            results.append(_check_one(sessions, key, now, config))
        except Exception as exc:  # one broken experiment must not stop the others' checks
            log.exception("drift: experiment %s failed", key)
            results.append(DriftCheck(experiment=key, status="failed", reason=str(exc)))
    _drop_stale_gauges({r.experiment: r for r in results})
    return results


def _check_one(
    sessions: sessionmaker[Session], key: str, now: datetime, config: Settings
) -> DriftCheck:
    with sessions() as session:
        experiment = session.scalar(select(Experiment).where(Experiment.key == key))
        if experiment is None or experiment.status not in CHECKED_STATUSES:
            return DriftCheck(experiment=key, status="skipped", reason="no longer running")
        check, due = _measure(session, experiment, now, config)
        experiment_id = experiment.id
    for f in check.features:
        FEATURE_PSI.labels(key, f.feature).set(f.result.psi)
    if check.srm is not None and math.isfinite(check.srm.p_value):
        SRM_P_VALUE.labels(key).set(check.srm.p_value)
    if due:
        with transaction(sessions) as session:
            for alert in due:
                raised = raise_alert(
                    session=session,
                    experiment_id=experiment_id,
                    kind=alert.kind,
                    key=alert.key,
                    severity=alert.severity,
                    message=alert.message,
                    evidence=alert.evidence,
                )
                if raised is not None:
                    check.alerts.append(alert.key)
        for alert_key in check.alerts:
            DRIFT_ALERTS.labels(alert_key.split(":", 1)[0]).inc()
    return check


def _measure(
    session: Session, experiment: Experiment, now: datetime, config: Settings
) -> tuple[DriftCheck, list[_Alert]]:
    key = experiment.key
    if experiment.started_at is None:
        return DriftCheck(experiment=key, status="skipped", reason="not started"), []
    reference_start = experiment.started_at
    reference_end = reference_start + timedelta(seconds=config.drift_reference_s)
    recent_start = now - timedelta(seconds=config.drift_recent_s)
    windows = {
        "reference_start": reference_start.isoformat(),
        "reference_end": reference_end.isoformat(),
        "recent_start": recent_start.isoformat(),
        "recent_end": now.isoformat(),
    }
    if recent_start < reference_end:
        return (
            DriftCheck(
                experiment=key,
                status="skipped",
                reason="the recent window overlaps the reference window",
                windows=windows,
            ),
            [],
        )
    cap = config.drift_max_rows
    reference = _sample(
        session, experiment, reference_start, reference_end, cap, probabilities=False
    )
    recent = _sample(session, experiment, recent_start, now, cap, probabilities=True)
    if min(len(reference), len(recent)) < config.drift_min_decisions:
        return (
            DriftCheck(
                experiment=key,
                status="skipped",
                reason=f"too few decisions: {len(reference)} in the reference window, "
                f"{len(recent)} in the recent one (at least {config.drift_min_decisions} each)",
                windows=windows,
            ),
            [],
        )
    check = DriftCheck(experiment=key, status="checked", windows=windows)
    due: list[_Alert] = []
    counts = {"reference": len(reference), "recent": len(recent)}

    # Context features.
    ref_features = [flatten(row.context) for row in reference]
    rec_features = [flatten(row.context) for row in recent]
    presence = Tally(name for ctx in (*ref_features, *rec_features) for name in ctx)
    names = sorted(presence, key=lambda n: (-presence[n], n))[:MAX_FEATURES]
    for name in sorted(names):
        result = feature_psi(
            [ctx.get(name) for ctx in ref_features], [ctx.get(name) for ctx in rec_features]
        )
        alert = result.band == "significant" and result.p_value < config.drift_alpha
        check.features.append(FeatureDrift(name, result, alert))
        if alert:
            due.append(
                _Alert(
                    kind="psi_drift",
                    key=_alert_key("psi_drift", key, name),
                    severity="warning",
                    message=f"Context feature {name!r} of {key!r} drifted: PSI {result.psi:.3f} "
                    f"({result.band}) between the reference and the recent window.",
                    evidence={
                        "feature": name,
                        **psi_evidence(result),
                        "windows": windows,
                        "counts": counts,
                    },
                )
            )

    # Reward rate per arm.
    arms = [v.key for v in experiment.variants]
    check.reward, check.reward_note = _reward_drift(session, experiment, now, config, arms)
    if check.reward is not None:
        for arm in check.reward.drifted:
            due.append(
                _Alert(
                    kind="reward_drift",
                    key=_alert_key("reward_drift", key, arms[arm.arm]),
                    severity="warning",
                    message=f"The {experiment.primary_metric!r} rate of arm {arms[arm.arm]!r} "
                    f"in {key!r} moved from {arm.reference_mean:.4g} to {arm.recent_mean:.4g} "
                    f"(Holm-adjusted p = {arm.p_adjusted:.2g}).",
                    evidence=_reward_evidence(check.reward, arm.arm, arms, experiment, windows),
                )
            )

    # SRM of the recent window.
    check.srm, check.srm_note = _srm(recent, arms)
    if check.srm is not None and check.srm.mismatch:
        srm = check.srm
        due.append(
            _Alert(
                kind="srm",
                key=_alert_key("srm", key, None),
                severity="critical",
                message=f"Sample ratio mismatch in {key!r} over the recent window "
                f"(p = {srm.p_value:.2g} < {srm.threshold:g}): arms got "
                f"{dict(zip(arms, srm.observed, strict=True))} decisions where the logged "
                "probabilities imply "
                f"{ {a: round(e, 1) for a, e in zip(arms, srm.expected, strict=True)} }.",
                evidence={
                    "statistic": _finite(srm.statistic),
                    "dof": srm.dof,
                    "p_value": srm.p_value,
                    "threshold": srm.threshold,
                    "observed": dict(zip(arms, srm.observed, strict=True)),
                    "expected": dict(zip(arms, srm.expected, strict=True)),
                    "windows": {"start": windows["recent_start"], "end": windows["recent_end"]},
                    "decisions": sum(srm.observed),
                },
            )
        )
    return check, due


# --- features --------------------------------------------------------------------------------


def flatten(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """{feature: value} with namespaced features named "ns.feature"."""
    out: dict[str, Any] = {}
    for name, value in (context or {}).items():
        if isinstance(value, Mapping):
            for inner, v in value.items():
                out[f"{name}.{inner}"] = v
        else:
            out[name] = value
    return out


def feature_psi(reference: Sequence[Any], recent: Sequence[Any]) -> PsiResult:
    """PSI of one feature's values (None: absent). Numeric (not bool) with more distinct
    values than bins: quantile bins; otherwise categorical (a 0/1 or 1..5 feature is better
    compared value by value)."""
    present = [v for v in (*reference, *recent) if v is not None]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    if numeric and len(set(present)) > DEFAULT_BINS:
        return numeric_psi(
            np.array([math.nan if v is None else float(v) for v in reference]),
            np.array([math.nan if v is None else float(v) for v in recent]),
        )
    return categorical_psi(reference, recent)


def psi_evidence(result: PsiResult) -> dict[str, Any]:
    return {
        "psi": result.psi,
        "band": result.band,
        "kind": result.kind,
        "p_value": result.p_value,
        "smoothing": result.smoothing,
        "bins": [
            {
                "bin": b.label,
                "reference": b.reference,
                "recent": b.recent,
                "reference_share": b.reference_share,
                "recent_share": b.recent_share,
                "contribution": b.contribution,
            }
            for b in result.bins
        ],
    }


@dataclass(frozen=True, slots=True)
class _Row:
    arm: int
    fallback: bool
    probabilities: dict[str, float] | None
    context: dict[str, Any] | None


def _sample(
    session: Session,
    experiment: Experiment,
    start: datetime,
    end: datetime,
    cap: int,
    *,
    probabilities: bool,
) -> list[_Row]:
    """The most recent `cap` experimental decisions made in [start, end) (their logged
    probability vectors only when asked: every JSON document costs a parse)."""
    logged = Decision.probabilities if probabilities else null()
    query = (
        select(Decision.arm, Decision.fallback, logged, Decision.context)
        .where(
            Decision.experiment_id == experiment.id,
            Decision.experimental.is_(True),
            Decision.decided_at >= start,
            Decision.decided_at < end,
        )
        .order_by(Decision.decided_at.desc())
        .limit(cap)
    )
    return [_Row(*row) for row in session.execute(query)]


# --- reward drift ----------------------------------------------------------------------------


def _reward_drift(
    session: Session, experiment: Experiment, now: datetime, config: Settings, arms: list[str]
) -> tuple[RewardDrift | None, str | None]:
    assert experiment.started_at is not None
    closed_through = now - timedelta(
        seconds=experiment.reward_window_s + config.learner_safety_lag_s
    )
    reference_end = experiment.started_at + timedelta(seconds=config.drift_reference_s)
    recent_start = closed_through - timedelta(seconds=config.drift_recent_s)
    if recent_start < reference_end:
        return None, "the recent window of closed decisions overlaps the reference window"
    ref = _reward_stats(session, experiment, experiment.started_at, reference_end, now, config)
    rec = _reward_stats(session, experiment, recent_start, closed_through, now, config)
    if min(sum(s.n for s, _ in ref), sum(s.n for s, _ in rec)) < config.drift_min_decisions:
        return None, "too few closed decisions in a window"
    binary = all(
        lo >= 0.0
        and hi <= 1.0
        and abs(s.sum_squares - s.total) <= BINARY_TOLERANCE * max(1.0, s.total)
        for s, (lo, hi) in (*ref, *rec)
    )
    try:
        result = reward_drift(
            [s for s, _ in ref],
            [s for s, _ in rec],
            kind="binary" if binary else "continuous",
            alpha=config.drift_alpha,
        )
    except StatsInputError as exc:
        return None, str(exc)
    return result, None


def _reward_stats(
    session: Session,
    experiment: Experiment,
    start: datetime,
    end: datetime,
    now: datetime,
    config: Settings,
) -> list[tuple[SampleStats, tuple[float, float]]]:
    """Per arm: (n, sum, sum of squares) of the primary metric and its (min, max), over the
    most recent `drift_max_rows` analysed decisions made in [start, end]."""
    value = metric_value(
        experiment, experiment.primary_metric, missing=experiment.default_reward, received_by=now
    )
    rows = (
        select(Decision.arm.label("arm"), value.label("v"))
        .where(*analysed(experiment, decided_by=end, decided_from=start))
        .order_by(Decision.decided_at.desc())
        .limit(config.drift_max_rows)
        .subquery()
    )
    v = rows.c.v
    query = (
        select(rows.c.arm, func.count(v), func.sum(v), func.sum(v * v), func.min(v), func.max(v))
        .where(v.is_not(None))
        .group_by(rows.c.arm)
    )
    out = [(SampleStats(0, 0.0, 0.0), (0.0, 0.0))] * len(experiment.variants)
    for arm, n, total, squares, lo, hi in session.execute(query):
        out[int(arm)] = (
            SampleStats(int(n), float(total or 0.0), float(squares or 0.0)),
            (float(lo), float(hi)),
        )
    return out


def _reward_evidence(
    result: RewardDrift, arm: int, arms: list[str], experiment: Experiment, windows: dict[str, str]
) -> dict[str, Any]:
    return {
        "arm": arms[arm],
        "metric": experiment.primary_metric,
        "test": result.test,
        "kind": result.kind,
        "alpha": result.alpha,
        "correction": "holm",
        "reference_start": windows["reference_start"],
        "reference_end": windows["reference_end"],
        "recent_closed_through_reward_window_s": experiment.reward_window_s,
        "arms": [
            {
                "arm": arms[a.arm],
                "reference_n": a.reference_n,
                "recent_n": a.recent_n,
                "reference_mean": a.reference_mean,
                "recent_mean": a.recent_mean,
                "difference": a.difference,
                "p_value": a.p_value,
                "p_adjusted": a.p_adjusted,
                "drift": a.drift,
                "note": a.note,
            }
            for a in result.arms
        ],
    }


# --- SRM -------------------------------------------------------------------------------------


def _srm(rows: list[_Row], arms: list[str]) -> tuple[SrmResult | None, str | None]:
    kept = [r for r in rows if not r.fallback]
    if not kept:
        return None, "no non-fallback decisions in the recent window"
    try:
        probabilities = np.array(
            [[float((r.probabilities or {})[a]) for a in arms] for r in kept], dtype=np.float64
        )
    except KeyError as exc:
        return None, f"a decision's logged probabilities lack arm {exc}"
    served = np.array([r.arm for r in kept], dtype=np.int64)
    try:
        return srm_check_log(served, probabilities, threshold=SRM_THRESHOLD), None
    except StatsInputError as exc:
        return None, str(exc)


# --- helpers ---------------------------------------------------------------------------------


def _alert_key(kind: str, experiment: str, subject: str | None) -> str:
    key = f"{kind}:{experiment}" if subject is None else f"{kind}:{experiment}:{subject}"
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: MAX_KEY - 17]}~{digest}"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _drop_stale_gauges(checks: dict[str, DriftCheck]) -> None:
    for experiment in list(_gauged):
        check = checks.get(experiment)
        if check is not None and check.status == "failed":
            continue  # keep the last values rather than flap
        current = {f.feature for f in check.features} if check is not None else set()
        for feature in _gauged[experiment] - current:
            with contextlib.suppress(KeyError):
                FEATURE_PSI.remove(experiment, feature)
        if check is None:
            _remove_srm(experiment)
            del _gauged[experiment]
        else:
            _gauged[experiment] = current
    for experiment, check in checks.items():
        if check.features or check.srm is not None:
            _gauged[experiment] = {f.feature for f in check.features}


def _remove_srm(experiment: str) -> None:
    with contextlib.suppress(KeyError):
        SRM_P_VALUE.remove(experiment)
