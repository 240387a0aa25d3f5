"""API keys: create, list, revoke, verify. Keys look like `crp_<prefix>_<secret>`.

Only SHA-256(secret) is stored; verification compares digests in constant time. The prefix is
public and indexes the row, so a lookup never scans.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import NotFound
from app.keys.models import ApiKey

SCOPES = ("admin", "decide", "read")
KEY_PREFIX = "crp"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a stored key or the configured admin key."""

    key_id: int | None
    name: str
    prefix: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def actor(self) -> str:
        return f"key:{self.name} ({self.prefix})"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(raw: str) -> tuple[str, str] | None:
    parts = raw.split("_", 2)  # the secret itself may contain "_"
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create(*, session: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Store a new key; returns the row and the full key (shown once, never stored)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=prefix, secret_sha256=digest(secret), scopes=sorted(scopes))
    session.add(row)
    session.flush()
    return row, f"{KEY_PREFIX}_{prefix}_{secret}"


def list_keys(*, session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke(*, session: Session, prefix: str) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        raise NotFound(f"no API key with prefix {prefix!r}")
    if not row.revoked:
        row.revoked = True
        row.revoked_at = utcnow()
    return row


def any_stored(*, session: Session) -> bool:
    """Whether any key, even a revoked one, was ever stored."""
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def verify(*, session: Session, raw: str) -> Principal | None:
    parts = split_key(raw)
    if parts is None:
        return None
    prefix, secret = parts
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked:
        # Still hash, so a missing prefix costs the same as a wrong secret.
        hmac.compare_digest(digest(secret), "0" * 64)
        return None
    if not hmac.compare_digest(digest(secret), row.secret_sha256):
        return None
    return Principal(row.id, row.name, row.prefix, frozenset(row.scopes))
