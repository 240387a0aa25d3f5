"""/v1/alerts: list alerts (read scope) and resolve them (admin scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.alerts import service
from app.alerts.models import Alert
from app.alerts.schemas import AlertOut
from app.db import transaction
from app.errors import page_cursor
from app.runtime import RuntimeDep
from app.schemas import KEY_PATTERN, Page
from app.security import Admin, Read

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
AlertId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Alert id")]


def to_out(alert: Alert, experiment: str | None) -> AlertOut:
    return AlertOut(
        id=alert.id,
        experiment=experiment,
        experiment_id=alert.experiment_id,
        kind=alert.kind,
        key=alert.key,
        severity=alert.severity,
        message=alert.message,
        evidence=alert.evidence,
        created_at=alert.created_at,
        resolved_at=alert.resolved_at,
    )


@router.get("", response_model=Page[AlertOut], summary="List alerts")
def list_alerts(
    _: Read,
    runtime: RuntimeDep,
    experiment: Annotated[
        str | None, Query(pattern=KEY_PATTERN, description="Only this experiment's alerts.")
    ] = None,
    state: Annotated[service.State, Query(description="open (default), resolved or all.")] = "open",
    kind: Annotated[
        str | None, Query(pattern=r"^[a-z0-9_]{1,32}$", description="Only this kind.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[AlertOut]:
    """Newest first, with the evidence each alert was raised on."""
    before = page_cursor(cursor)
    with runtime.sessions() as session:
        rows, more = service.list_page(
            session=session,
            experiment=experiment,
            state=state,
            kind=kind,
            limit=limit,
            before=before,
        )
        items = [to_out(alert, key) for alert, key in rows]
    return Page[AlertOut](items=items, next_cursor=str(more) if more is not None else None)


@router.get("/{alert_id}", response_model=AlertOut, summary="Get an alert")
def get(alert_id: AlertId, _: Read, runtime: RuntimeDep) -> AlertOut:
    with runtime.sessions() as session:
        return to_out(*service.get(session=session, alert_id=alert_id))


@router.post("/{alert_id}/resolve", response_model=AlertOut, summary="Resolve an alert")
def resolve(alert_id: AlertId, _: Admin, runtime: RuntimeDep) -> AlertOut:
    """Marks it resolved and sends `alert.resolved` to subscribed webhooks. Resolving a
    resolved alert changes nothing (and sends nothing). A condition that persists raises a
    new alert at its next check."""
    with transaction(runtime.sessions) as session:
        service.resolve(session=session, alert_id=alert_id)
    with runtime.sessions() as session:
        return to_out(*service.get(session=session, alert_id=alert_id))
