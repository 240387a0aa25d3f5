"""/v1/webhooks: subscriptions, their delivery log and test events (admin scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.db import transaction
from app.errors import page_cursor
from app.runtime import RuntimeDep
from app.schemas import Page
from app.security import Admin
from app.webhooks import service
from app.webhooks.schemas import (
    DeliveryOut,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Webhook id")]


@router.post("", status_code=201, response_model=WebhookCreated, summary="Create a webhook")
def create(body: WebhookCreate, _: Admin, runtime: RuntimeDep) -> WebhookCreated:
    """Subscribe a URL to events. The answer carries the signing secret, once: it is never
    listed again."""
    with transaction(runtime.sessions) as session:
        hook, secret = service.create(
            session=session, url=body.url, events=body.events, secret=body.secret
        )
        out = WebhookOut.model_validate(hook)
    return WebhookCreated(**out.model_dump(), secret=secret)


@router.get("", response_model=list[WebhookOut], summary="List webhooks")
def list_webhooks(
    _: Admin,
    runtime: RuntimeDep,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> list[WebhookOut]:
    with runtime.sessions() as session:
        return [
            WebhookOut.model_validate(h) for h in service.list_hooks(session=session, active=active)
        ]


@router.get("/{webhook_id}", response_model=WebhookOut, summary="Get a webhook")
def get(webhook_id: WebhookId, _: Admin, runtime: RuntimeDep) -> WebhookOut:
    with runtime.sessions() as session:
        return WebhookOut.model_validate(service.get(session=session, webhook_id=webhook_id))


@router.delete("/{webhook_id}", response_model=WebhookOut, summary="Deactivate a webhook")
def deactivate(webhook_id: WebhookId, _: Admin, runtime: RuntimeDep) -> WebhookOut:
    """It receives no further events; its pending deliveries are marked failed. The row and
    its delivery log stay."""
    with transaction(runtime.sessions) as session:
        return WebhookOut.model_validate(service.deactivate(session=session, webhook_id=webhook_id))


@router.get(
    "/{webhook_id}/deliveries", response_model=Page[DeliveryOut], summary="A webhook's delivery log"
)
def deliveries(
    webhook_id: WebhookId,
    _: Admin,
    runtime: RuntimeDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[DeliveryOut]:
    """Newest first: event, status, attempts, the last HTTP status and error, timestamps."""
    before = page_cursor(cursor)
    with runtime.sessions() as session:
        rows, more = service.deliveries_page(
            session=session, webhook_id=webhook_id, status=status, limit=limit, before=before
        )
        items = [DeliveryOut.model_validate(r) for r in rows]
    return Page[DeliveryOut](items=items, next_cursor=str(more) if more is not None else None)


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a test event",
)
def send_test(webhook_id: WebhookId, _: Admin, runtime: RuntimeDep) -> DeliveryOut:
    """Queue a `webhook.test` event for this webhook (whatever its patterns); the worker
    delivers it like any other, and the delivery log shows the outcome."""
    with transaction(runtime.sessions) as session:
        return DeliveryOut.model_validate(
            service.enqueue_test(session=session, webhook_id=webhook_id)
        )
