"""API key shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.schemas import RequestModel, SafeText

Scope = Literal["admin", "decide", "read"]


class KeyCreate(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100), SafeText]
    scopes: list[Scope] = Field(min_length=1, max_length=3)


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    prefix: str
    scopes: list[str]
    revoked: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The full key. Shown once: only its hash is stored.")
