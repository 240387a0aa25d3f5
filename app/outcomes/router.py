"""POST /v1/outcomes (single and batch).

While the process is degraded (app.decisions.fallback: the database unavailable), or when the
database fails this request with a connection error, outcomes are appended to the local spool
(written and fsynced) and answered with status `spooled`; they are stored, deduplicated as
always, when the database is back.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError

from app import metrics
from app.db import transaction, utcnow
from app.decisions.fallback import Fallback, outage
from app.decisions.writer import transient
from app.errors import ProblemError
from app.outcomes import service
from app.outcomes.schemas import BatchOutcomeIn, BatchOutcomeResult, OutcomeIn, OutcomeResult
from app.runtime import Runtime, RuntimeDep
from app.security import Decide

router = APIRouter(prefix="/v1/outcomes", tags=["outcomes"])
ATTEMPTS = 3
RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not recorded (the database was too slow, and neither it nor the "
        "local spool could take the outcomes); retry"
    }
}


class _TooLate(Exception):
    """The transaction took longer than the learner allows: rolled back."""


def _unavailable() -> ProblemError:
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
                    raise _TooLate()
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


async def _spooled(
    fallback: Fallback, items: Sequence[OutcomeIn], error: BaseException | None
) -> bool:
    try:
        return await fallback.spool_outcomes_async(items, error=error)
    except OSError as exc:
        raise _unavailable() from exc


def _spooled_results(items: Sequence[OutcomeIn]) -> list[dict[str, Any]]:
    metrics.record_outcomes(["spooled"] * len(items))
    return [
        {"decision_id": item.decision_id, "metric": item.metric, "status": "spooled"}
        for item in items
    ]


async def _handle(
    request: Request, runtime: Runtime, items: list[OutcomeIn], *, batch: bool
) -> list[OutcomeResult] | list[dict[str, Any]]:
    """Stored results, or (spooled) plain dicts: `spooled` answers bypass response
    validation, so they are returned as they are.

    The transaction runs in a worker thread (as a sync endpoint's would). With the fallback
    installed it gets the decide path's budget: past it, the outcomes are spooled and the
    thread is abandoned; if it commits after all, the replay finds them stored already
    (outcomes are deduplicated), so they are stored once either way."""
    fallback: Fallback | None = getattr(request.app.state, "fallback", None)
    if fallback is not None and fallback.degraded and await _spooled(fallback, items, None):
        return _spooled_results(items)
    record = functools.partial(_record, runtime, items, batch=batch)
    try:
        if fallback is None:
            results = await anyio.to_thread.run_sync(record)
        else:
            async with asyncio.timeout(fallback.budget_for(len(items))):
                results = await anyio.to_thread.run_sync(record, abandon_on_cancel=True)
    except Exception as exc:
        if fallback is None or not (isinstance(exc, _TooLate) or outage(exc)):
            if isinstance(exc, _TooLate):
                raise _unavailable() from None
            raise
        await _spooled(fallback, items, exc)
        return _spooled_results(items)
    metrics.record_outcomes([r.status for r in results])
    return results


@router.post("", response_model=OutcomeResult, summary="Report one outcome", responses=RESPONSES)
async def record_one(
    body: OutcomeIn, _: Decide, runtime: RuntimeDep, request: Request
) -> OutcomeResult | JSONResponse:
    """Join an outcome to its decision. The answer's status says what happened to it:
    `accepted`, `duplicate`, `late`, `unknown_decision`, or `spooled` (the database is
    unavailable: kept on local disk, stored when it is back)."""
    results = await _handle(request, runtime, [body], batch=False)
    first = results[0]
    return JSONResponse(first) if isinstance(first, dict) else first


@router.post(
    "/batch",
    response_model=BatchOutcomeResult,
    summary="Report many outcomes",
    responses=RESPONSES,
)
async def record_batch(
    body: BatchOutcomeIn, _: Decide, runtime: RuntimeDep, request: Request
) -> BatchOutcomeResult | JSONResponse:
    """Up to 10,000 outcomes in one transaction, with a status per item (`spooled` for all
    of them while the database is unavailable)."""
    results = await _handle(request, runtime, body.items, batch=True)
    if results and isinstance(results[0], dict):
        counts = {"accepted": 0, "duplicate": 0, "late": 0, "unknown_decision": 0}
        return JSONResponse({"items": results, "counts": {**counts, "spooled": len(results)}})
    stored = [r for r in results if isinstance(r, OutcomeResult)]
    return BatchOutcomeResult(items=stored, counts=service.counts(stored))
