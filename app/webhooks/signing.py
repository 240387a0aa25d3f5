"""Webhook signatures, Stripe/GitHub style: standard library only, so a receiver can copy it.

Every delivery carries

    X-Croupier-Timestamp: <unix seconds when it was sent>
    X-Croupier-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

where <body> is the exact request body (bytes). Signing the timestamp with the body lets a
receiver refuse replays: `verify_signature` accepts a timestamp at most `tolerance_s` seconds
away from its own clock.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "sha256"


def signature(secret: str, timestamp: str, body: bytes | str) -> str:
    """The X-Croupier-Signature header value for `body` sent at `timestamp`."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + raw, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes | str,
    header: str,
    tolerance_s: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """Whether `header` (X-Croupier-Signature) signs `body` with `secret` at `timestamp`
    (X-Croupier-Timestamp), and that timestamp is within `tolerance_s` of `now` (default: this
    machine's clock). Compares in constant time. Pass the raw body bytes as received, before
    any JSON parsing: re-serialised JSON does not verify."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    # Several comma-separated signatures may be sent (say, while a secret is being rotated).
    return any(
        hmac.compare_digest(expected.encode(), candidate.strip().encode("utf-8", "replace"))
        for candidate in header.split(",")
    )
