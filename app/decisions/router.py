"""POST /v1/experiments/{key}/decisions (single and batch).

The single decision is the hot path. It is served by a plain Starlette route (`fast_route`,
placed first in the app's routing table by app.main), which skips FastAPI's per-request
machinery (dependency solving, two exit stacks, response validation): about 40 µs, as much
as the rest of a decision. The key is checked by a direct call, the body parsed once by
pydantic's JSON parser, the answer serialised once. The FastAPI route `decide` below runs the
very same function; it is there so that /docs and the OpenAPI schema describe the endpoint.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.routing import Route

from app import metrics
from app.db import utcnow
from app.decisions import service
from app.decisions.cache import ServedExperiment
from app.decisions.fallback import Fallback, outage
from app.decisions.schemas import (
    MAX_BATCH,
    BatchDecideRequest,
    BatchDecideResponse,
    DecideRequest,
    DecideResponse,
)
from app.errors import Invalid, NotFound, ProblemError, parse_body
from app.runtime import Runtime
from app.schemas import KEY_PATTERN, ExperimentKey
from app.security import authorize

router = APIRouter(prefix="/v1/experiments/{key}/decisions", tags=["decisions"])
KEY_RE = re.compile(KEY_PATTERN.strip("^$"))  # fullmatch: no trailing newline
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid API key (`Authorization: Bearer crp_...`)"},
    403: {"description": "The key lacks the `decide` scope"},
    404: {"description": "No such experiment"},
    409: {"description": "The experiment is a draft, or a decision_id was reused"},
    422: {"description": "Invalid request: `errors` names each field and rule"},
    503: {
        "description": "Nothing could be served: the database is unavailable and this process "
        "has not served the experiment yet (or neither the database nor the local spool "
        "could record the decision); retry"
    },
}


# The batch body documented by hand (parse_body reads it): items of the single request.
BATCH_SCHEMA = {
    "title": "BatchDecideRequest",
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": DecideRequest.model_json_schema(),
            "minItems": 1,
            "maxItems": MAX_BATCH,
        }
    },
    "required": ["items"],
    "additionalProperties": False,
}


def _unavailable(detail: str) -> ProblemError:
    return ProblemError(503, detail, kind="unavailable", headers={"Retry-After": "1"})


async def _decide(
    request: Request, key: str, items: list[DecideRequest], *, batch: bool
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    runtime: Runtime = request.app.state.runtime
    fallback: Fallback | None = getattr(request.app.state, "fallback", None)
    service.check_items(items, max_features=runtime.settings.max_context_features, batch=batch)
    if fallback is not None and fallback.degraded:
        served = fallback.cached(key)  # while degraded the database is not asked at all
        if served is None:
            raise _unavailable(
                "the database is unavailable and this process has not served experiment "
                f"{key!r} yet, so there is nothing to answer with; retry"
            )
    else:
        try:
            served = await runtime.policies.get(key)
        except Exception as exc:
            raise _unavailable("the experiment could not be read; retry") from exc
    if served is None:
        raise NotFound(f"no experiment with key {key!r}")
    now = utcnow()
    rows = [
        service.decision_row(served, item, now=now, where=f"body.items[{i}]" if batch else "body")
        for i, item in enumerate(items)
    ]
    client_ids = any(item.decision_id is not None for item in items)
    stored: list[dict[str, Any]] | None = None
    if fallback is not None and fallback.degraded:
        stored = await _spool(fallback, served, rows, None)
    if stored is None:
        try:
            if fallback is None:
                stored = await runtime.writer.submit(rows, client_ids=client_ids)
            else:
                async with asyncio.timeout(fallback.budget_for(len(rows))):
                    stored = await runtime.writer.submit(rows, client_ids=client_ids)
        except ProblemError:
            raise
        except Exception as exc:
            if fallback is None or not outage(exc):
                raise _unavailable(
                    "the decision could not be recorded, so none was served; retry"
                ) from exc
            stored = await _spool(fallback, served, rows, exc)
            assert stored is not None
    answers = [service.response(served, row) for row in stored]
    served_by_fallback = [a["variant"] for a in answers if a["fallback"]]
    if served_by_fallback:
        metrics.record_decisions(served.key, served_by_fallback, fallback=True)
    if len(served_by_fallback) < len(answers):
        live = [a["variant"] for a in answers if not a["fallback"]]
        metrics.record_decisions(served.key, live, fallback=False)
    metrics.record_decide_latency(time.perf_counter() - started)
    return answers


async def _spool(
    fallback: Fallback,
    served: ServedExperiment,
    rows: list[dict[str, Any]],
    error: BaseException | None,
) -> list[dict[str, Any]] | None:
    try:
        return await fallback.spool_decisions(served, rows, error=error)
    except OSError as exc:
        raise _unavailable(
            "the database is unavailable and the local spool could not be written, so no "
            "decision was served; retry"
        ) from exc


def _json(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


@router.post(
    "",
    response_model=DecideResponse,
    summary="Decide for one unit",
    responses=AUTH_RESPONSES,
    # The body is parsed by parse_body (one pass of pydantic's JSON parser); this documents it.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DecideRequest.model_json_schema()}},
        }
    },
)
async def decide(key: ExperimentKey, request: Request) -> Response:
    """Pick a variant and log the exposure (with its propensity) before answering.
    Needs a key with the `decide` scope."""
    return await decide_one(request)


async def decide_one(request: Request) -> Response:
    key = request.path_params["key"]
    await authorize(request, "decide")
    if not KEY_RE.fullmatch(key):
        raise Invalid(
            "path.key", "string_pattern_mismatch", f"no experiment key looks like {key!r}"
        )
    body = await parse_body(request, DecideRequest)
    return _json((await _decide(request, key, [body], batch=False))[0])


fast_route = Route(
    "/v1/experiments/{key}/decisions", decide_one, methods=["POST"], include_in_schema=False
)


@router.post(
    "/batch",
    response_model=BatchDecideResponse,
    summary="Decide for many units",
    responses=AUTH_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BATCH_SCHEMA}},
        }
    },
)
async def decide_batch(key: ExperimentKey, request: Request) -> Response:
    """Up to 10,000 units in one call, written in one transaction (all or nothing).
    Needs a key with the `decide` scope."""
    await authorize(request, "decide")  # before reading up to 1 MiB of body
    body = await parse_body(request, BatchDecideRequest)
    return _json({"items": await _decide(request, key, body.items, batch=True)})
