"""Webhooks: queue an event for every matching subscription (in the caller's transaction)."""

from __future__ import annotations

import fnmatch
import uuid
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.webhooks.models import Webhook, WebhookDelivery


def enqueue(*, session: Session, event: str, payload: dict[str, Any]) -> int:
    """Queue `event` for every active webhook subscribed to it; returns how many. Never sends
    anything itself (and so never runs on the decide path): the delivery worker does."""
    hooks = session.scalars(select(Webhook).where(Webhook.active.is_(True))).all()
    event_id = uuid.uuid4().hex
    now = utcnow()
    body = orjson.dumps(
        {"id": event_id, "event": event, "at": now.isoformat(), "data": payload}
    ).decode()
    count = 0
    for hook in hooks:
        if any(fnmatch.fnmatchcase(event, pattern) for pattern in hook.events):
            session.add(
                WebhookDelivery(
                    webhook_id=hook.id,
                    event_id=event_id,
                    event=event,
                    body=body,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            count += 1
    return count
