"""Webhooks: the API, signatures, and the delivery worker against a real local HTTP receiver.

The worker is driven one pass at a time (`deliver_due(now=...)`), so retries and backoff are
tested without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.webhooks import service
from app.webhooks.models import WebhookDelivery
from app.webhooks.signing import signature, verify_signature
from app.webhooks.worker import (
    Attempt,
    DeliveryPolicy,
    backoff_s,
    claim_due,
    deliver_due,
    delivery_loop,
    record,
)
from tests.conftest import ADMIN

# ---------------------------------------------------------------- a real local receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A threaded HTTP server on 127.0.0.1: records every POST and answers with the next
    scripted status (then `default`)."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = holder["receiver"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers.items()), body))
                status = rec.script.pop(0) if rec.script else rec.default
            payload = b"nope" if status >= 300 else b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["receiver"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["receiver"]
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- app and database


POLICY = DeliveryPolicy(timeout_s=2.0, max_attempts=4, backoff_base_s=1.0, backoff_max_s=60.0)


def run_pass(
    sessions: sessionmaker[Session],
    now: datetime | None = None,
    policy: DeliveryPolicy = POLICY,
    rng: random.Random | None = None,
) -> int:
    async def once() -> int:
        async with httpx.AsyncClient(timeout=policy.timeout_s) as client:
            return await deliver_due(
                sessions=sessions, client=client, policy=policy, now=now, rng=rng
            )

    return asyncio.run(once())


def create_hook(
    api: TestClient, url: str, events: list[str], secret: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "events": events}
    if secret is not None:
        body["secret"] = secret
    response = api.post("/v1/webhooks", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def emit(sessions: sessionmaker[Session], event: str, payload: dict[str, Any]) -> int:
    with transaction(sessions) as session:
        return service.enqueue(session=session, event=event, payload=payload)


def deliveries(sessions: sessionmaker[Session]) -> list[WebhookDelivery]:
    with sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def log_of(api: TestClient, hook_id: int, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"/v1/webhooks/{hook_id}/deliveries", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# ---------------------------------------------------------------- the API


def test_secret_is_returned_once_and_never_listed(api: TestClient, receiver: Receiver) -> None:
    generated = create_hook(api, receiver.url + "/a", ["*"])
    assert generated["secret"].startswith("whsec_")
    assert len(generated["secret"]) > 40
    chosen = create_hook(api, receiver.url + "/b", ["alert.raised"], secret="s" * 20)
    assert chosen["secret"] == "s" * 20
    listing = api.get("/v1/webhooks", headers=ADMIN)
    assert listing.status_code == 200
    assert [h["id"] for h in listing.json()] == [generated["id"], chosen["id"]]
    assert all("secret" not in h for h in listing.json())
    assert generated["secret"] not in listing.text
    assert "s" * 20 not in listing.text
    one = api.get(f"/v1/webhooks/{generated['id']}", headers=ADMIN)
    assert "secret" not in one.json()
    assert generated["secret"] not in one.text
    assert one.json()["events"] == ["*"]
    assert one.json()["active"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/hook", "events": ["*"]}, "body.url"),
        ({"url": "javascript:alert(1)", "events": ["*"]}, "body.url"),
        ({"url": "not a url", "events": ["*"]}, "body.url"),
        ({"url": "http://", "events": ["*"]}, "body.url"),
        ({"url": "https://user:pw@example.com/", "events": ["*"]}, "body.url"),
        ({"url": "https://example.com:99999/", "events": ["*"]}, "body.url"),
        ({"url": "https://example.com/" + "a" * 2000, "events": ["*"]}, "body.url"),
        ({"events": ["*"]}, "body.url"),
        ({"url": "https://example.com/", "events": []}, "body.events"),
        ({"url": "https://example.com/", "events": ["Rollout Started"]}, "body.events[0]"),
        ({"url": "https://example.com/", "events": ["alert.raised", "a..b"]}, "body.events[1]"),
        ({"url": "https://example.com/", "events": ["*"], "secret": "short"}, "body.secret"),
        ({"url": "https://example.com/", "events": ["*"], "extra": 1}, "body.extra"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/webhooks", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert api.get("/v1/webhooks", headers=ADMIN).json() == []


def test_webhooks_need_the_admin_scope(api: TestClient) -> None:
    created = api.post("/v1/keys", json={"name": "reader", "scopes": ["read"]}, headers=ADMIN)
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    assert api.get("/v1/webhooks", headers=reader).status_code == 403
    assert api.get("/v1/webhooks").status_code == 401
    body = {"url": "https://example.com/", "events": ["*"]}
    assert api.post("/v1/webhooks", json=body, headers=reader).status_code == 403


def test_unknown_webhook_is_404(api: TestClient) -> None:
    for method, path in [
        ("GET", "/v1/webhooks/9"),
        ("DELETE", "/v1/webhooks/9"),
        ("GET", "/v1/webhooks/9/deliveries"),
        ("POST", "/v1/webhooks/9/test"),
    ]:
        response = api.request(method, path, headers=ADMIN)
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"] == "application/problem+json"


# ---------------------------------------------------------------- signing


def test_signature_scheme() -> None:
    body = b'{"id":"e1","event":"webhook.test"}'
    header = signature("topsecret", "1700000000", body)
    assert header.startswith("sha256=")
    assert len(header) == len("sha256=") + 64
    assert verify_signature("topsecret", "1700000000", body, header, now=1_700_000_100)
    assert verify_signature("topsecret", "1700000000", body.decode(), header, now=1_700_000_000)
    # Another secret, another body, another timestamp, too old, too new: refused.
    assert not verify_signature("other", "1700000000", body, header, now=1_700_000_000)
    assert not verify_signature("topsecret", "1700000000", body + b" ", header, now=1_700_000_000)
    assert not verify_signature("topsecret", "1700000001", body, header, now=1_700_000_000)
    assert not verify_signature("topsecret", "1700000000", body, header, now=1_700_000_301)
    assert not verify_signature("topsecret", "1700000000", body, header, now=1_699_999_699)
    assert not verify_signature("topsecret", "17e8", body, header, now=1_700_000_000)
    assert not verify_signature("topsecret", "1700000000", body, "sha256=00", now=1_700_000_000)
    # Several signatures (secret rotation): any one matching is enough.
    both = f"sha256={'0' * 64}, {header}"
    assert verify_signature("topsecret", "1700000000", body, both, now=1_700_000_000)


def test_deliveries_are_signed_with_the_hooks_secret(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    secret = "a-receiver-chosen-secret"
    hook = create_hook(api, receiver.url + "/hook", ["alert.*"], secret=secret)
    assert emit(sessions, "alert.raised", {"kind": "srm", "p": 1e-9}) == 1
    assert run_pass(sessions) == 1
    [got] = receiver.requests
    stored = deliveries(sessions)[0]
    assert got.path == "/hook"
    assert got.body == stored.body.encode()  # exactly the stored bytes
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-croupier-event"] == "alert.raised"
    assert headers["x-croupier-delivery"] == stored.event_id
    assert abs(int(headers["x-croupier-timestamp"]) - time.time()) < 60
    ts, sig = headers["x-croupier-timestamp"], headers["x-croupier-signature"]
    assert verify_signature(secret, ts, got.body, sig)
    assert not verify_signature(hook["secret"] + "x", ts, got.body, sig)
    document = orjson.loads(got.body)
    assert document["event"] == "alert.raised"
    assert document["id"] == stored.event_id
    assert document["data"] == {"kind": "srm", "p": 1e-9}
    [entry] = log_of(api, hook["id"])
    assert entry["status"] == "delivered"
    assert entry["attempts"] == 1
    assert entry["last_status"] == 200
    assert entry["last_error"] is None
    assert entry["delivered_at"] is not None
    assert entry["event"] == "alert.raised"
    assert run_pass(sessions) == 0  # nothing is sent twice


# ---------------------------------------------------------------- retries


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = DeliveryPolicy(backoff_base_s=1.0, backoff_max_s=3600.0)
    rng = random.Random(7)
    for attempts in range(1, 20):
        full = min(3600.0, 2.0 ** (attempts - 1))
        for _ in range(20):
            delay = backoff_s(attempts, policy, rng)
            assert full / 2 <= delay <= full
    assert backoff_s(1000, policy, rng) <= 3600.0


def test_failed_attempt_is_retried_after_backoff(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_hook(api, receiver.url, ["rollout.*"], secret="x" * 16)
    receiver.script = [500]
    emit(sessions, "rollout.advanced", {"step": 2})
    t0 = utcnow()
    assert run_pass(sessions, now=t0) == 1
    [entry] = log_of(api, hook["id"])
    assert entry["status"] == "pending"
    assert entry["attempts"] == 1
    assert entry["last_status"] == 500
    assert entry["last_error"] == "HTTP 500: nope"
    retry_at = datetime.fromisoformat(entry["next_attempt_at"])
    assert t0 + timedelta(seconds=0.5) <= retry_at <= t0 + timedelta(seconds=1)
    assert run_pass(sessions, now=t0 + timedelta(seconds=0.4)) == 0  # not due yet
    assert run_pass(sessions, now=t0 + timedelta(seconds=1.01)) == 1
    [entry] = log_of(api, hook["id"])
    assert entry["status"] == "delivered"
    assert entry["attempts"] == 2
    assert entry["last_status"] == 200
    assert entry["last_error"] is None
    first, second = receiver.requests
    # The same event (same id, same bytes), signed again at sending time.
    assert first.headers["X-Croupier-Delivery"] == second.headers["X-Croupier-Delivery"]
    assert first.body == second.body
    assert verify_signature(
        "x" * 16,
        second.headers["X-Croupier-Timestamp"],
        second.body,
        second.headers["X-Croupier-Signature"],
    )


def test_gives_up_after_max_attempts(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_hook(api, receiver.url, ["*"])
    receiver.default = 503
    emit(sessions, "alert.raised", {"id": 1})
    now = utcnow()
    rng = random.Random(1)
    delays = []
    for attempt in range(1, POLICY.max_attempts + 1):
        assert run_pass(sessions, now=now, rng=rng) == 1
        [entry] = log_of(api, hook["id"])
        assert entry["attempts"] == attempt
        assert entry["last_status"] == 503
        if attempt < POLICY.max_attempts:
            assert entry["status"] == "pending"
            retry_at = datetime.fromisoformat(entry["next_attempt_at"])
            delays.append((retry_at - now).total_seconds())
            now = retry_at
    assert entry["status"] == "failed"
    assert entry["last_error"] == "HTTP 503: nope"
    assert entry["delivered_at"] is None
    for n, delay in enumerate(delays, start=1):  # 1 s, 2 s, 4 s, with jitter
        assert 2.0 ** (n - 1) / 2 <= delay <= 2.0 ** (n - 1)
    assert run_pass(sessions, now=now + timedelta(days=1)) == 0
    assert len(receiver.requests) == POLICY.max_attempts
    assert log_of(api, hook["id"], status="failed")[0]["id"] == entry["id"]
    assert log_of(api, hook["id"], status="pending") == []


def test_unreachable_receiver_counts_as_a_failed_attempt(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    closed = receiver.url  # a port nobody listens on once the server is closed
    receiver.server.shutdown()
    receiver.server.server_close()
    hook = create_hook(api, closed, ["*"])
    emit(sessions, "alert.raised", {})
    assert run_pass(sessions) == 1
    [entry] = log_of(api, hook["id"])
    assert entry["status"] == "pending"
    assert entry["attempts"] == 1
    assert entry["last_status"] is None
    assert "ConnectError" in entry["last_error"]


def test_redirects_are_not_followed(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_hook(api, receiver.url, ["*"])
    receiver.script = [302]
    emit(sessions, "alert.raised", {})
    run_pass(sessions)
    [entry] = log_of(api, hook["id"])
    assert entry["status"] == "pending"
    assert entry["last_status"] == 302
    assert len(receiver.requests) == 1


# ---------------------------------------------------------------- subscriptions


def test_events_reach_only_the_hooks_subscribed_to_them(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    rollouts = create_hook(api, receiver.url + "/rollouts", ["rollout.*"])
    alerts = create_hook(api, receiver.url + "/alerts", ["alert.raised"])
    create_hook(api, receiver.url + "/everything", ["*"])
    gone = create_hook(api, receiver.url + "/gone", ["*"])
    assert api.delete(f"/v1/webhooks/{gone['id']}", headers=ADMIN).json()["active"] is False
    assert emit(sessions, "rollout.advanced", {"step": 1}) == 2
    assert emit(sessions, "alert.raised", {"id": 1}) == 2
    assert emit(sessions, "alert.resolved", {"id": 1}) == 1
    assert emit(sessions, "experiment.started", {}) == 1
    assert run_pass(sessions) == 6
    got = sorted((r.path, r.headers["X-Croupier-Event"]) for r in receiver.requests)
    assert got == [
        ("/alerts", "alert.raised"),
        ("/everything", "alert.raised"),
        ("/everything", "alert.resolved"),
        ("/everything", "experiment.started"),
        ("/everything", "rollout.advanced"),
        ("/rollouts", "rollout.advanced"),
    ]
    assert [e["event"] for e in log_of(api, rollouts["id"])] == ["rollout.advanced"]
    assert [e["event"] for e in log_of(api, alerts["id"])] == ["alert.raised"]
    assert log_of(api, gone["id"]) == []
    listed = api.get("/v1/webhooks", params={"active": "true"}, headers=ADMIN).json()
    assert gone["id"] not in [h["id"] for h in listed]


def test_deactivating_fails_pending_deliveries(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_hook(api, receiver.url, ["*"])
    emit(sessions, "alert.raised", {})
    response = api.delete(f"/v1/webhooks/{hook['id']}", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["active"] is False
    assert api.delete(f"/v1/webhooks/{hook['id']}", headers=ADMIN).status_code == 200
    [entry] = log_of(api, hook["id"])
    assert entry["status"] == "failed"
    assert entry["last_error"] == "webhook deactivated"
    assert emit(sessions, "alert.raised", {}) == 0
    assert run_pass(sessions) == 0
    assert receiver.requests == []
    assert api.post(f"/v1/webhooks/{hook['id']}/test", headers=ADMIN).status_code == 409


def test_test_event_goes_to_that_hook_only(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_hook(api, receiver.url + "/mine", ["rollout.*"], secret="t" * 16)
    create_hook(api, receiver.url + "/other", ["*"])
    response = api.post(f"/v1/webhooks/{hook['id']}/test", headers=ADMIN)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["event"] == "webhook.test"
    assert queued["status"] == "pending"
    assert run_pass(sessions) == 1
    [got] = receiver.requests
    assert got.path == "/mine"
    assert got.headers["X-Croupier-Event"] == "webhook.test"
    assert got.headers["X-Croupier-Delivery"] == queued["event_id"]
    assert verify_signature(
        "t" * 16, got.headers["X-Croupier-Timestamp"], got.body, got.headers["X-Croupier-Signature"]
    )
    assert log_of(api, hook["id"])[0]["status"] == "delivered"


def test_delivery_log_is_newest_first_and_paginated(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_hook(api, receiver.url, ["*"])
    for i in range(5):
        emit(sessions, f"event.n{i}", {})
    first = api.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=2", headers=ADMIN).json()
    assert [e["event"] for e in first["items"]] == ["event.n4", "event.n3"]
    second = api.get(
        f"/v1/webhooks/{hook['id']}/deliveries",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=ADMIN,
    ).json()
    assert [e["event"] for e in second["items"]] == ["event.n2", "event.n1"]
    bad = api.get(f"/v1/webhooks/{hook['id']}/deliveries?cursor=x", headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.cursor"
    bad = api.get(f"/v1/webhooks/{hook['id']}/deliveries?status=sent", headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.status"


# ---------------------------------------------------------------- claiming


def test_a_claimed_delivery_is_leased_to_one_worker(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    create_hook(api, receiver.url, ["*"])
    emit(sessions, "alert.raised", {})
    now = utcnow()
    with transaction(sessions) as session:
        [mine] = claim_due(session=session, now=now, policy=POLICY)
    with transaction(sessions) as session:  # another worker, same moment: nothing left
        assert claim_due(session=session, now=now, policy=POLICY) == []
    later = now + timedelta(seconds=POLICY.lease_s + 1)
    with transaction(sessions) as session:  # the lease expired (say, the worker died)
        [theirs] = claim_due(session=session, now=later, policy=POLICY)
    assert theirs.id == mine.id
    assert theirs.lease_until != mine.lease_until

    with transaction(sessions) as session:  # the first worker's late result is ignored
        record(session=session, results=[(mine, Attempt(200, None))], now=later, policy=POLICY)
    [row] = deliveries(sessions)
    assert row.status == "pending"
    assert row.attempts == 0
    with transaction(sessions) as session:
        record(session=session, results=[(theirs, Attempt(204, None))], now=later, policy=POLICY)
    [row] = deliveries(sessions)
    assert row.status == "delivered"
    assert row.attempts == 1
    assert row.last_status == 204


def test_delivery_loop_delivers_in_the_background(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    create_hook(api, receiver.url, ["*"])
    for i in range(3):
        emit(sessions, f"event.n{i}", {})

    async def run() -> None:
        policy = DeliveryPolicy(timeout_s=2.0, batch=2)
        task = asyncio.create_task(delivery_loop(sessions=sessions, interval_s=0.02, policy=policy))
        try:
            for _ in range(250):
                if len(receiver.requests) >= 3 and all(
                    d.status == "delivered" for d in await asyncio.to_thread(deliveries, sessions)
                ):
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert sorted(r.headers["X-Croupier-Event"] for r in receiver.requests) == [
        "event.n0",
        "event.n1",
        "event.n2",
    ]
    assert all(d.status == "delivered" for d in deliveries(sessions))


def test_concurrent_workers_claim_disjoint_rows_on_postgres(
    api: TestClient, sessions: sessionmaker[Session], receiver: Receiver, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: a second claim waits for the first")
    create_hook(api, receiver.url, ["*"])
    for i in range(4):
        emit(sessions, f"event.n{i}", {})
    policy = DeliveryPolicy(batch=2)
    now = utcnow()
    with transaction(sessions) as first:
        mine = claim_due(session=first, now=now, policy=policy)
        with transaction(sessions) as second:  # while the first still holds its row locks
            theirs = claim_due(session=second, now=now, policy=policy)
    assert len(mine) == 2
    assert len(theirs) == 2
    assert not {c.id for c in mine} & {c.id for c in theirs}
