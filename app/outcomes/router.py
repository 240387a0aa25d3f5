"""POST /v1/outcomes (single and batch)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.db import transaction, utcnow
from app.decisions.writer import transient
from app.errors import ProblemError
from app.outcomes import service
from app.outcomes.schemas import BatchOutcomeIn, BatchOutcomeResult, OutcomeIn, OutcomeResult
from app.runtime import Runtime, RuntimeDep
from app.security import Decide

router = APIRouter(prefix="/v1/outcomes", tags=["outcomes"])
ATTEMPTS = 3


def _too_late() -> ProblemError:
    return ProblemError(
        503,
        "the outcomes could not be recorded in time, so none was stored; retry",
        kind="unavailable",
        headers={"Retry-After": "1"},
    )


def _record(runtime: Runtime, items: list[OutcomeIn], *, batch: bool) -> list[OutcomeResult]:
    max_delay = runtime.settings.max_commit_delay_s
    for attempt in range(ATTEMPTS):
        now = utcnow()
        try:
            with transaction(runtime.sessions) as session:
                results = service.record(session=session, items=items, now=now, batch=batch)
                # An outcome judged on time must commit before the learner can have closed
                # its decision's window; if this transaction was that slow, roll it back.
                if max_delay is not None and utcnow() - now > timedelta(seconds=max_delay):
                    raise _too_late()
                return results
        except (IntegrityError, DBAPIError) as exc:
            # A deadlock, a serialisation failure or a locked SQLite database: the whole
            # transaction rolled back, so running it again is safe.
            retry = isinstance(exc, IntegrityError) or (
                exc.orig is not None and transient(exc.orig)
            )
            if not retry or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@router.post("", response_model=OutcomeResult, summary="Report one outcome")
def record_one(body: OutcomeIn, _: Decide, runtime: RuntimeDep) -> OutcomeResult:
    """Join an outcome to its decision. The answer's status says what happened to it."""
    return _record(runtime, [body], batch=False)[0]


@router.post("/batch", response_model=BatchOutcomeResult, summary="Report many outcomes")
def record_batch(body: BatchOutcomeIn, _: Decide, runtime: RuntimeDep) -> BatchOutcomeResult:
    """Up to 10,000 outcomes in one transaction, with a status per item."""
    results = _record(runtime, body.items, batch=True)
    return BatchOutcomeResult(items=results, counts=service.counts(results))
