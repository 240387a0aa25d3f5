"""GET /metrics: every Prometheus series in the text exposition format (docs/monitoring.md).

Needs an API key with the `read` scope (labels name experiments and variants), unless
`CROUPIER_METRICS_PUBLIC` is true. The scrape runs in a worker thread: it may read the
database (one query per `CROUPIER_METRICS_CACHE_TTL_S`), never on the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.runtime import Runtime
from app.security import authorize

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={
        200: {"content": {metrics.CONTENT_TYPE_LATEST: {}}, "description": "Every series."},
        401: {"description": "No valid API key (unless CROUPIER_METRICS_PUBLIC is true)."},
        403: {"description": "The key lacks the read scope."},
    },
)
async def prometheus_metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if not runtime.settings.metrics_public:
        await authorize(request, "read")
    body = await run_in_threadpool(
        metrics.render, runtime.sessions, ttl_s=runtime.settings.metrics_cache_ttl_s
    )
    return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)
