"""Liveness and readiness.

/readyz answers 200 `ready` (database reachable, schema at head) or, while the fallback serves
(app.decisions.fallback: the database is unreachable or too slow), 200 `degraded` with the
fallback's details: since when, the last error, what waits in the spool. Degraded is 200 on
purpose: the process still answers every experiment it has served (with control) and loses no
exposure or outcome, and the database is shared, so a load balancer that took degraded
instances out would turn a database outage into a total one. Alert on `status` instead. It is
503 `not ready` when the schema is behind, or when the database is unreachable and the process
has nothing to serve from memory (no experiment loaded yet).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app import migrate
from app.decisions.fallback import Fallback
from app.runtime import Runtime, get_runtime

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database is reachable and migrated to head (or the fallback serves)",
    responses={
        200: {"description": "`ready`, or `degraded`: the fallback answers (see checks)"},
        503: {"description": "`not ready`: schema behind, or no database and nothing cached"},
    },
)
def readyz(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> JSONResponse:
    checks: dict[str, Any] = {}
    fallback: Fallback | None = getattr(request.app.state, "fallback", None)
    if fallback is not None and fallback.degraded:
        # Not probing: a database that hangs would hang this too. The replay loop probes.
        checks["database"] = f"unavailable: {fallback.last_error}"
    else:
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            checks["migrations"] = "ok" if migrate.is_at_head(runtime.engine) else "behind"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
            if fallback is not None:
                fallback.enter(exc)
    if fallback is not None and (fallback.degraded or fallback.busy):
        checks["fallback"] = fallback.status()
    if checks.get("database") == "ok" and checks.get("migrations") == "ok":
        status, code = "ready", 200
    elif fallback is not None and fallback.degraded and fallback.serving:
        status, code = "degraded", 200
    else:
        status, code = "not ready", 503
    return JSONResponse({"status": status, "checks": checks}, status_code=code)
