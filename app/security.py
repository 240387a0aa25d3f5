"""API-key authentication and scopes as FastAPI dependencies.

Send the key as `Authorization: Bearer crp_...` (or `X-API-Key: crp_...`). 401 without a valid
key, 403 when the key lacks the scope. Verified keys are trusted from memory for
`CROUPIER_KEY_CACHE_TTL_S` seconds so the decide path does not pay a query per request.

The dashboard's `croupier_key` cookie (HttpOnly, SameSite=Strict) stands in for the header only
on GET/HEAD requests that need the `read` scope, and only when neither header is sent (a bad
header is refused, never replaced by the cookie): a cookie never authorizes a change (no CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.errors import ProblemError
from app.keys import service as keys_service
from app.keys.service import Principal

if TYPE_CHECKING:
    from app.runtime import Runtime

CONFIGURED_ADMIN = "configured admin key"
COOKIE_NAME = "croupier_key"
COOKIE_METHODS = frozenset({"GET", "HEAD"})


class KeyCache:
    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, raw: str) -> Principal | None:
        entry = self._entries.get(_cache_key(raw))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, raw: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[_cache_key(raw)] = (time.monotonic() + self._ttl, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _cache_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, kind="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="croupier"'}
    )


async def authenticate(runtime: Runtime, raw: str) -> Principal:
    configured = runtime.settings.admin_key
    if configured is not None and hmac.compare_digest(
        raw.encode(), configured.get_secret_value().encode()
    ):
        return Principal(None, CONFIGURED_ADMIN, "config", frozenset({"admin"}))
    principal = runtime.keys.get(raw)
    if principal is None:
        principal = await run_in_threadpool(_verify_stored, runtime, raw)
        if principal is None:
            raise _unauthorized("the API key is unknown or revoked")
        runtime.keys.put(raw, principal)
    return principal


def _verify_stored(runtime: Runtime, raw: str) -> Principal | None:
    with runtime.sessions() as session:
        return keys_service.verify(session=session, raw=raw)


async def authorize(request: Request, scope: str) -> Principal:
    """The caller's principal if its key is valid and has `scope`; 401/403 problems if not.

    Reads the headers directly: the decide path calls this without FastAPI's dependency
    machinery, which costs more than the whole check.
    """
    headers = request.headers
    raw = headers.get("x-api-key")
    authorization = headers.get("authorization")
    if authorization:
        kind, _, value = authorization.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            raise _unauthorized("use 'Authorization: Bearer <key>'")
        raw = value.strip()
    elif (
        raw is None
        and authorization is None
        and scope == "read"
        and request.method in COOKIE_METHODS
    ):
        raw = request.cookies.get(COOKIE_NAME)
    if not raw:
        raise _unauthorized("an API key is required (Authorization: Bearer <key>)")
    principal = await authenticate(request.app.state.runtime, raw)
    if not principal.allows(scope):
        raise ProblemError(
            403,
            f"this key's scopes {sorted(principal.scopes)} do not include {scope!r}",
            kind="forbidden",
        )
    return principal


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        return await authorize(request, scope)

    return dependency


Admin = Annotated[Principal, Depends(require("admin"))]
Decide = Annotated[Principal, Depends(require("decide"))]
Read = Annotated[Principal, Depends(require("read"))]
