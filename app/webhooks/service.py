"""Webhooks: subscriptions, and queueing events for them (in the caller's transaction).

`enqueue` is the outbox: other modules call it inside the transaction that makes the event
true, so a delivery row exists if and only if that transaction commits. It never sends
anything (and so never runs on the decide path): `app.webhooks.worker` does.
"""

from __future__ import annotations

import fnmatch
import secrets
import uuid
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, NotFound
from app.webhooks.models import Webhook, WebhookDelivery

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
TEST_EVENT = "webhook.test"


def matches(event: str, patterns: list[str]) -> bool:
    """Whether `event` matches any subscription pattern ("*", "rollout.*", "alert.raised")."""
    return any(fnmatch.fnmatchcase(event, pattern) for pattern in patterns)


def _body(event_id: str, event: str, at: datetime, payload: dict[str, Any]) -> str:
    return orjson.dumps(
        {"id": event_id, "event": event, "at": at.isoformat(), "data": payload}
    ).decode()


def enqueue(*, session: Session, event: str, payload: dict[str, Any]) -> int:
    """Queue `event` for every active webhook subscribed to it; returns how many. Never sends
    anything itself (and so never runs on the decide path): the delivery worker does."""
    hooks = session.scalars(select(Webhook).where(Webhook.active.is_(True))).all()
    event_id = uuid.uuid4().hex
    now = utcnow()
    body = _body(event_id, event, now, payload)
    count = 0
    for hook in hooks:
        if matches(event, hook.events):
            session.add(_delivery(hook.id, event_id, event, body, now))
            count += 1
    return count


def _delivery(
    webhook_id: int, event_id: str, event: str, body: str, now: datetime
) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_id=webhook_id,
        event_id=event_id,
        event=event,
        body=body,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def create(
    *, session: Session, url: str, events: list[str], secret: str | None
) -> tuple[Webhook, str]:
    """Store a subscription; returns it and its signing secret (generated when not given)."""
    secret = secret or generate_secret()
    hook = Webhook(url=url, secret=secret, events=events, active=True, created_at=utcnow())
    session.add(hook)
    session.flush()
    return hook, secret


def list_hooks(*, session: Session, active: bool | None = None) -> list[Webhook]:
    query = select(Webhook).order_by(Webhook.id)
    if active is not None:
        query = query.where(Webhook.active.is_(active))
    return list(session.scalars(query))


def get(*, session: Session, webhook_id: int) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook with id {webhook_id}")
    return hook


def deactivate(*, session: Session, webhook_id: int) -> Webhook:
    """Stop sending to this webhook: it gets no new events and its pending deliveries fail
    (recorded as such in its log). Deactivating twice changes nothing."""
    hook = get(session=session, webhook_id=webhook_id)
    if hook.active:
        hook.active = False
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
            .values(status="failed", last_error="webhook deactivated")
        )
    return hook


def enqueue_test(*, session: Session, webhook_id: int) -> WebhookDelivery:
    """Queue a `webhook.test` event for this webhook only (whatever it subscribes to)."""
    hook = get(session=session, webhook_id=webhook_id)
    if not hook.active:
        raise Conflict(f"webhook {webhook_id} is deactivated", kind="inactive-webhook")
    event_id = uuid.uuid4().hex
    now = utcnow()
    payload = {"webhook_id": hook.id, "message": "a test event from Croupier"}
    delivery = _delivery(
        hook.id, event_id, TEST_EVENT, _body(event_id, TEST_EVENT, now, payload), now
    )
    session.add(delivery)
    session.flush()
    return delivery


def deliveries_page(
    *, session: Session, webhook_id: int, status: str | None, limit: int, before: int | None
) -> tuple[list[WebhookDelivery], int | None]:
    """A webhook's delivery log, newest first; the cursor is the last row's id."""
    get(session=session, webhook_id=webhook_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
