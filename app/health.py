"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app import migrate
from app.runtime import Runtime, get_runtime

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head")
def readyz(runtime: Annotated[Runtime, Depends(get_runtime)]) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["migrations"] = "ok" if migrate.is_at_head(runtime.engine) else "behind"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = checks.get("database") == "ok" and checks.get("migrations") == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
