"""Webhook API shapes. Secrets appear only in the creation answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from app.schemas import RequestModel, SafeText

EVENT_PATTERN = r"^[a-z0-9_*]+(\.[a-z0-9_*]+)*$"
"""Dot-separated event names; `*` matches any characters ("rollout.*", "*")."""
DeliveryStatus = Literal["pending", "delivered", "failed"]


def _http_url(value: str) -> str:
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise PydanticCustomError("url", "the URL must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise PydanticCustomError(
            "url", "not a valid URL: {reason}", {"reason": str(exc)}
        ) from None
    if parts.scheme not in ("http", "https"):
        raise PydanticCustomError("url", "the URL must start with http:// or https://")
    if not parts.hostname:
        raise PydanticCustomError("url", "the URL must name a host")
    if port == 0:
        raise PydanticCustomError("url", "the URL's port must be between 1 and 65535")
    if parts.username is not None or parts.password is not None:
        raise PydanticCustomError("url", "the URL must not carry credentials; use the secret")
    if parts.fragment:
        raise PydanticCustomError("url", "the URL must not have a #fragment")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


HttpUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_http_url)
]
EventPattern = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=EVENT_PATTERN)]


class WebhookCreate(RequestModel):
    url: HttpUrl = Field(description="Where events are POSTed (http or https).")
    events: Annotated[list[EventPattern], AfterValidator(_unique)] = Field(
        min_length=1,
        max_length=50,
        description='Event patterns: "alert.raised", "rollout.*", or "*" for every event.',
    )
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200), SafeText] | None = (
        Field(
            None,
            description="The HMAC-SHA256 signing secret (16 to 200 characters); generated when "
            "omitted. Returned once, in this answer.",
        )
    )


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret. Shown once: store it now.")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    webhook_id: int
    event_id: str = Field(description="Sent as X-Croupier-Delivery; the same on every retry.")
    event: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None = Field(description="HTTP status of the last attempt, if any.")
    last_error: str | None
    next_attempt_at: datetime = Field(description="When a pending delivery is tried next.")
    created_at: datetime
    delivered_at: datetime | None
