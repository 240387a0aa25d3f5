"""POST /v1/outcomes (single and batch)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.exc import IntegrityError

from app.db import transaction, utcnow
from app.errors import ProblemError
from app.outcomes import service
from app.outcomes.schemas import BatchOutcomeIn, BatchOutcomeResult, OutcomeIn, OutcomeResult
from app.runtime import Runtime, get_runtime
from app.security import Decide

router = APIRouter(prefix="/v1/outcomes", tags=["outcomes"])
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _record(runtime: Runtime, items: list[OutcomeIn], *, batch: bool) -> list[OutcomeResult]:
    for _attempt in range(3):
        try:
            with transaction(runtime.sessions) as session:
                return service.record(session=session, items=items, now=utcnow(), batch=batch)
        except IntegrityError:
            # Another request stored one of these outcomes between our check and our insert.
            # Our transaction rolled back whole; running again reports it as a duplicate.
            continue
    raise ProblemError(
        409,
        "outcomes in this request kept colliding with concurrent requests; retry",
        kind="concurrent-duplicate",
        headers={"Retry-After": "1"},
    )


@router.post("", response_model=OutcomeResult, summary="Report one outcome")
def record_one(body: OutcomeIn, _: Decide, runtime: RuntimeDep) -> OutcomeResult:
    """Join an outcome to its decision. The answer's status says what happened to it."""
    return _record(runtime, [body], batch=False)[0]


@router.post("/batch", response_model=BatchOutcomeResult, summary="Report many outcomes")
def record_batch(body: BatchOutcomeIn, _: Decide, runtime: RuntimeDep) -> BatchOutcomeResult:
    """Up to 10,000 outcomes in one transaction, with a status per item."""
    results = _record(runtime, body.items, batch=True)
    return BatchOutcomeResult(items=results, counts=service.counts(results))
