"""Alerts: one open alert per condition key, announced by webhook (`alert.raised`,
`alert.resolved`) in the same transaction, and counted by the croupier_open_alerts gauge."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.alerts.metrics import mark_changed
from app.alerts.models import Alert
from app.db import utcnow
from app.errors import NotFound
from app.experiments.models import Experiment
from app.webhooks import service as webhooks

SEVERITIES = ("info", "warning", "critical")
State = Literal["open", "resolved", "all"]


def raise_alert(
    *,
    session: Session,
    experiment_id: int | None,
    kind: str,
    key: str,
    severity: str,
    message: str,
    evidence: dict[str, Any],
) -> Alert | None:
    """Record an alert unless one with the same key is still open; None when it is. The
    webhook delivery is queued in the same transaction (an outbox), so it is sent if and
    only if the alert is stored."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    open_alert = session.scalar(
        select(Alert.id).where(Alert.key == key, Alert.resolved_at.is_(None)).limit(1)
    )
    if open_alert is not None:
        return None
    alert = Alert(
        experiment_id=experiment_id,
        kind=kind,
        key=key,
        severity=severity,
        message=message,
        evidence=evidence,
        created_at=utcnow(),
    )
    session.add(alert)
    session.flush()
    webhooks.enqueue(session=session, event="alert.raised", payload=to_json(alert))
    mark_changed(session)
    return alert


def _resolve(session: Session, alert: Alert, now: datetime | None) -> Alert:
    if alert.resolved_at is None:
        alert.resolved_at = now or utcnow()
        session.flush()
        webhooks.enqueue(session=session, event="alert.resolved", payload=to_json(alert))
        mark_changed(session)
    return alert


def resolve(*, session: Session, alert_id: int, now: datetime | None = None) -> Alert:
    """Resolve an alert (idempotent: an already resolved one is returned unchanged and
    announced only once). Queues `alert.resolved` in the same transaction."""
    alert = session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    return _resolve(session, alert, now)


def resolve_key(*, session: Session, key: str, now: datetime | None = None) -> Alert | None:
    """Resolve the open alert with this condition key, if any (for a check whose condition
    has cleared); the next `raise_alert` with the key then opens a new one."""
    alert = session.scalar(
        select(Alert)
        .where(Alert.key == key, Alert.resolved_at.is_(None))
        .order_by(Alert.id)
        .limit(1)
        .with_for_update()
    )
    return None if alert is None else _resolve(session, alert, now)


def get(*, session: Session, alert_id: int) -> tuple[Alert, str | None]:
    row = session.execute(
        select(Alert, Experiment.key)
        .outerjoin(Experiment, Experiment.id == Alert.experiment_id)
        .where(Alert.id == alert_id)
    ).first()
    if row is None:
        raise NotFound(f"no alert with id {alert_id}")
    return row[0], row[1]


def list_page(
    *,
    session: Session,
    experiment: str | None = None,
    state: State = "open",
    kind: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> tuple[list[tuple[Alert, str | None]], int | None]:
    """Alerts newest first, each with its experiment's key; the cursor is the last row's id.
    An unknown experiment key is a 404."""
    query = (
        select(Alert, Experiment.key)
        .outerjoin(Experiment, Experiment.id == Alert.experiment_id)
        .order_by(Alert.id.desc())
        .limit(limit + 1)
    )
    if experiment is not None:
        experiment_id = session.scalar(select(Experiment.id).where(Experiment.key == experiment))
        if experiment_id is None:
            raise NotFound(f"no experiment with key {experiment!r}")
        query = query.where(Alert.experiment_id == experiment_id)
    if state == "open":
        query = query.where(Alert.resolved_at.is_(None))
    elif state == "resolved":
        query = query.where(Alert.resolved_at.is_not(None))
    if kind is not None:
        query = query.where(Alert.kind == kind)
    if before is not None:
        query = query.where(Alert.id < before)
    rows: list[tuple[Alert, str | None]] = [(a, k) for a, k in session.execute(query).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1][0].id if more and rows else None)


def to_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "experiment_id": alert.experiment_id,
        "kind": alert.kind,
        "key": alert.key,
        "severity": alert.severity,
        "message": alert.message,
        "evidence": alert.evidence,
        "created_at": alert.created_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }
