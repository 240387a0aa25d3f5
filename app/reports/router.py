"""GET /v1/experiments/{key}/report: the report as JSON (or the per-arm table as CSV)."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AwareDatetime

from app.experiments import service as experiments
from app.reports import render
from app.reports.export import MEDIA_TYPES, Format, write
from app.reports.schemas import Report
from app.reports.service import build_report
from app.runtime import RuntimeDep
from app.schemas import ExperimentKey
from app.security import Read

router = APIRouter(prefix="/v1/experiments", tags=["reports"])


@router.get(
    "/{key}/report",
    response_model=Report,
    summary="Experiment report",
    responses={200: {"content": {"text/csv": {}}}},
)
def report(
    key: ExperimentKey,
    _: Read,
    runtime: RuntimeDep,
    as_of: Annotated[
        AwareDatetime | None,
        Query(description="Report the data stored by this instant (default: now)."),
    ] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="csv: the per-arm table only.")
    ] = "json",
) -> Report | Response:
    """Design, traffic and SRM, every metric per arm with fixed-horizon and always-valid
    comparisons, Bayesian summaries, off-policy estimates for bandits, group-sequential looks,
    time series for plots, and a recommendation with the rule that produced it
    (docs/reports.md)."""
    with runtime.sessions() as session:
        experiment = experiments.get(session=session, key=key)
        result = build_report(session=session, experiment=experiment, as_of=_utc(as_of))
    if format == "csv":
        return Response(
            render.to_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{key}-report.csv"'},
        )
    return result


def _utc(value: datetime | None) -> datetime | None:
    from datetime import UTC

    return None if value is None else value.astimezone(UTC)


@router.get(
    "/{key}/export",
    summary="Decision log export",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/x-ndjson": {},
                "text/csv": {},
                "application/vnd.apache.parquet": {},
            }
        }
    },
)
def export(
    key: ExperimentKey,
    _: Read,
    runtime: RuntimeDep,
    format: Annotated[
        Format, Query(description="dsjson (closed decisions), csv or parquet")
    ] = "dsjson",
    as_of: Annotated[AwareDatetime | None, Query(description="Data stored by this time.")] = None,
) -> Response:
    """The experiment's decisions: DSJson for `vw --cb_explore_adf --dsjson` (closed decisions,
    cost = -reward), or CSV / Parquet with context, propensities and rewards for analysts."""
    buffer = io.BytesIO()
    with runtime.sessions() as session:
        experiment = experiments.get(session=session, key=key)
        write(session=session, experiment=experiment, fmt=format, out=buffer, as_of=as_of)
    extension = {"dsjson": "json", "csv": "csv", "parquet": "parquet"}[format]
    return Response(
        buffer.getvalue(),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{key}.{extension}"'},
    )
