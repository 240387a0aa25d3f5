"""POST /v1/experiments/{key}/decisions (single and batch)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from app.db import utcnow
from app.decisions import service
from app.decisions.cache import ServedExperiment
from app.decisions.schemas import (
    BatchDecideRequest,
    BatchDecideResponse,
    DecideRequest,
    DecideResponse,
)
from app.errors import NotFound, ProblemError
from app.runtime import Runtime, get_runtime
from app.schemas import KEY_PATTERN
from app.security import Decide

router = APIRouter(prefix="/v1/experiments/{key}/decisions", tags=["decisions"])
ExperimentKey = Annotated[str, Path(pattern=KEY_PATTERN, description="Experiment key.")]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def _served(runtime: Runtime, key: str) -> ServedExperiment:
    served = await runtime.policies.get(key)
    if served is None:
        raise NotFound(f"no experiment with key {key!r}")
    return served


async def _decide(
    runtime: Runtime, key: str, items: list[DecideRequest], *, batch: bool
) -> list[DecideResponse]:
    service.check_items(items, max_features=runtime.settings.max_context_features, batch=batch)
    served = await _served(runtime, key)
    now = utcnow()
    rows = [service.decision_row(served, item, now=now) for item in items]
    try:
        stored = await runtime.writer.submit(
            rows, client_ids=any(item.decision_id is not None for item in items)
        )
    except ProblemError:
        raise
    except Exception as exc:
        raise ProblemError(
            503,
            "the decision could not be recorded, so none was served; retry",
            kind="unavailable",
            headers={"Retry-After": "1"},
        ) from exc
    return [service.response(served, row) for row in stored]


@router.post("", response_model=DecideResponse, summary="Decide for one unit")
async def decide(
    key: ExperimentKey, body: DecideRequest, _: Decide, runtime: RuntimeDep
) -> DecideResponse:
    """Pick a variant and log the exposure (with its propensity) before answering."""
    return (await _decide(runtime, key, [body], batch=False))[0]


@router.post("/batch", response_model=BatchDecideResponse, summary="Decide for many units")
async def decide_batch(
    key: ExperimentKey, body: BatchDecideRequest, _: Decide, runtime: RuntimeDep
) -> BatchDecideResponse:
    """Up to 10,000 units in one call, written in one transaction (all or nothing)."""
    return BatchDecideResponse(items=await _decide(runtime, key, body.items, batch=True))
