"""The webhook delivery worker: claims due deliveries, POSTs them signed, records each attempt.

Delivery is at least once. A claim is a short write transaction that pushes the rows'
`next_attempt_at` one lease into the future (PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`,
so workers in several processes never claim the same row; SQLite: the claim holds the write
lock). The HTTP calls happen outside any transaction; a second short transaction records the
results, but only for rows still under this worker's lease. A worker that dies mid-send loses
its lease and another one retries the row after it expires, so receivers deduplicate on
X-Croupier-Delivery.

2xx marks a delivery `delivered`; anything else (other status, timeout, refused connection,
redirect) counts an attempt and schedules the next one after an exponential backoff with
jitter, until `max_attempts`, when the delivery is `failed`. All database work runs in threads
(`asyncio.to_thread`): the event loop, and so the decide path, never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.metrics import REGISTRY
from app.settings import Settings
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.signing import signature

log = logging.getLogger("croupier.webhooks")

USER_AGENT = "Croupier-Webhooks/1"
MAX_ERROR_CHARS = 500
RESPONSE_EXCERPT_BYTES = 200

ATTEMPTS = Counter(
    "croupier_webhook_attempts",
    "Webhook delivery attempts, by result (delivered, retry, failed: gave up).",
    ["result"],
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    timeout_s: float = 5.0
    max_attempts: int = 15
    backoff_base_s: float = 1.0
    backoff_max_s: float = 3600.0
    batch: int = 50

    @property
    def lease_s(self) -> float:
        """How long a claimed row is left alone: well over one attempt's longest duration."""
        return 2 * self.timeout_s + 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            backoff_base_s=settings.webhook_backoff_base_s,
            backoff_max_s=settings.webhook_backoff_max_s,
        )


def backoff_s(attempts: int, policy: DeliveryPolicy, rng: random.Random | None = None) -> float:
    """Delay before the attempt after `attempts` failed ones: base * 2^(attempts - 1), capped,
    then "equal jitter" (uniform between half and all of it), so receivers that failed
    together are not retried together."""
    exponent = min(max(attempts - 1, 0), 60)
    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2.0**exponent)
    return delay * (0.5 + 0.5 * (rng or random).random())


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    event_id: str
    event: str
    body: str
    url: str
    secret: str
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    status: int | None  # HTTP status; None when no response came
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def any_due(*, session: Session, now: datetime) -> bool:
    """One cheap read (no write lock), so an idle worker never takes SQLite's write lock."""
    return (
        session.scalar(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .limit(1)
        )
        is not None
    )


def claim_due(*, session: Session, now: datetime, policy: DeliveryPolicy) -> list[Claimed]:
    """Lease up to `policy.batch` due deliveries (inside the caller's write transaction).
    Deliveries of a deactivated webhook are marked failed instead."""
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.event_id,
            WebhookDelivery.event,
            WebhookDelivery.body,
            Webhook.url,
            Webhook.secret,
            Webhook.active,
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(policy.batch)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    ).all()
    lease_until = now + timedelta(seconds=policy.lease_s)
    claimed = [
        Claimed(r.id, r.event_id, r.event, r.body, r.url, r.secret, lease_until)
        for r in rows
        if r.active
    ]
    inactive = [r.id for r in rows if not r.active]
    if claimed:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([c.id for c in claimed]))
            .values(next_attempt_at=lease_until)
        )
    if inactive:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(inactive))
            .values(status="failed", last_error="webhook deactivated")
        )
    return claimed


def record(
    *,
    session: Session,
    results: Sequence[tuple[Claimed, Attempt]],
    now: datetime,
    policy: DeliveryPolicy,
    rng: random.Random | None = None,
) -> None:
    """Store each attempt's outcome, for rows still under our lease (else another worker
    has taken the row over, and its own attempt will be recorded)."""
    for claimed, attempt in results:
        row = session.get(WebhookDelivery, claimed.id, with_for_update=True)
        if row is None or row.status != "pending" or row.next_attempt_at != claimed.lease_until:
            continue
        row.attempts += 1
        row.last_status = attempt.status
        row.last_error = attempt.error
        if attempt.ok:
            row.status = "delivered"
            row.delivered_at = now
            ATTEMPTS.labels("delivered").inc()
        elif row.attempts >= policy.max_attempts:
            row.status = "failed"
            ATTEMPTS.labels("failed").inc()
            log.warning(
                "webhook delivery %s (%s) failed after %d attempts: %s",
                row.id,
                row.event,
                row.attempts,
                attempt.error,
            )
        else:
            row.next_attempt_at = now + timedelta(seconds=backoff_s(row.attempts, policy, rng))
            ATTEMPTS.labels("retry").inc()


async def send(client: httpx.AsyncClient, claimed: Claimed, timestamp: str) -> Attempt:
    """POST one delivery; never raises for network or HTTP errors."""
    body = claimed.body.encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Croupier-Event": claimed.event,
        "X-Croupier-Delivery": claimed.event_id,
        "X-Croupier-Timestamp": timestamp,
        "X-Croupier-Signature": signature(claimed.secret, timestamp, body),
    }
    try:
        async with client.stream("POST", claimed.url, content=body, headers=headers) as response:
            if 200 <= response.status_code < 300:
                return Attempt(response.status_code, None)
            excerpt = b""
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                    break
            text = excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace").strip()
            error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
            return Attempt(response.status_code, error[:MAX_ERROR_CHARS])
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Attempt(None, error[:MAX_ERROR_CHARS])


def _claim(sessions: sessionmaker[Session], now: datetime, policy: DeliveryPolicy) -> list[Claimed]:
    with sessions() as session:
        if not any_due(session=session, now=now):
            return []
    with transaction(sessions) as session:
        return claim_due(session=session, now=now, policy=policy)


def _record(
    sessions: sessionmaker[Session],
    results: list[tuple[Claimed, Attempt]],
    now: datetime,
    policy: DeliveryPolicy,
    rng: random.Random | None,
) -> None:
    with transaction(sessions) as session:
        record(session=session, results=results, now=now, policy=policy, rng=rng)


def make_client(policy: DeliveryPolicy) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout_s),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


async def deliver_due(
    *,
    sessions: sessionmaker[Session],
    client: httpx.AsyncClient,
    policy: DeliveryPolicy,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> int:
    """One pass: claim up to `policy.batch` deliveries due at `now` (default: the clock), send
    them concurrently, record the outcomes; returns how many were attempted. `now` schedules
    (what is due, when to retry); the signed timestamp is always the real clock, since that
    is what receivers check."""
    moment = now or utcnow()
    claimed = await asyncio.to_thread(_claim, sessions, moment, policy)
    if not claimed:
        return 0
    timestamp = str(int(time.time()))
    attempts = await asyncio.gather(*(send(client, c, timestamp) for c in claimed))
    done = moment if now is not None else utcnow()
    await asyncio.to_thread(
        _record, sessions, list(zip(claimed, attempts, strict=True)), done, policy, rng
    )
    return len(claimed)


async def delivery_loop(
    *,
    sessions: sessionmaker[Session],
    interval_s: float,
    policy: DeliveryPolicy,
    client: httpx.AsyncClient | None = None,
) -> None:
    """Deliver due webhooks every `interval_s` until cancelled (a full batch is followed at
    once by the next). Errors are logged, never raised: the service keeps serving."""
    own = client is None
    http = client or make_client(policy)
    try:
        while True:
            try:
                while (
                    await deliver_due(sessions=sessions, client=http, policy=policy) >= policy.batch
                ):
                    pass
            except Exception:
                log.exception("webhook delivery pass failed; retrying in %.1fs", interval_s)
            await asyncio.sleep(interval_s)
    finally:
        if own:
            await http.aclose()
