"""GET /v1/experiments/{key}/report: the report as JSON (or the per-arm table as CSV)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AwareDatetime

from app.experiments import service as experiments
from app.reports import render
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
