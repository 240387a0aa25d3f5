"""Raising alerts: one open alert per condition key, announced by webhook (`alert.raised`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.alerts.models import Alert
from app.db import utcnow
from app.webhooks import service as webhooks

SEVERITIES = ("info", "warning", "critical")


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
    return alert


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
