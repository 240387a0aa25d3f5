"""/v1/keys: manage API keys (admin scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.db import transaction
from app.keys import service
from app.keys.schemas import KeyCreate, KeyCreated, KeyOut
from app.runtime import RuntimeDep
from app.security import Admin

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
def create(body: KeyCreate, _: Admin, runtime: RuntimeDep) -> KeyCreated:
    with transaction(runtime.sessions) as session:
        row, full = service.create(session=session, name=body.name, scopes=list(set(body.scopes)))
        out = KeyOut.model_validate(row)
    return KeyCreated(**out.model_dump(), key=full)


@router.get("", response_model=list[KeyOut], summary="List API keys")
def list_keys(_: Admin, runtime: RuntimeDep) -> list[KeyOut]:
    with runtime.sessions() as session:
        return [KeyOut.model_validate(k) for k in service.list_keys(session=session)]


@router.post("/{prefix}/revoke", response_model=KeyOut, summary="Revoke an API key")
def revoke(
    prefix: Annotated[str, Path(pattern=r"^[0-9a-f]{1,16}$")], _: Admin, runtime: RuntimeDep
) -> KeyOut:
    """Takes effect at once in this process, within CROUPIER_KEY_CACHE_TTL_S in others."""
    with transaction(runtime.sessions) as session:
        out = KeyOut.model_validate(service.revoke(session=session, prefix=prefix))
    runtime.keys.clear()
    return out
