"""Outcome API shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints
from pydantic_core import PydanticCustomError

from app.schemas import BoundedFloat, DecisionId, MetricName, RequestModel

MAX_BATCH = 10_000
Status = Literal["accepted", "duplicate", "late", "unknown_decision", "spooled"]
OutcomeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _plausible(value: datetime) -> datetime:
    try:
        in_range = EARLIEST <= value < LATEST
    except OverflowError:  # an offset that pushes the instant off the calendar
        in_range = False
    if not in_range:
        raise PydanticCustomError(
            "timestamp_range", "timestamp must be between 2000-01-01 and 2100-01-01 UTC"
        )
    return value


class OutcomeIn(RequestModel):
    decision_id: DecisionId
    value: BoundedFloat = Field(description="The reward or metric value (|value| <= 1e15).")
    metric: MetricName | None = Field(
        None, description="Metric name; the experiment's primary metric when omitted."
    )
    timestamp: Annotated[AwareDatetime, AfterValidator(_plausible)] | None = Field(
        None,
        description="When the outcome happened (with a UTC offset, between 2000 and 2100); "
        "now when omitted. It may not precede its decision by more than a minute.",
    )
    outcome_id: OutcomeId | None = Field(
        None,
        description="Your id for this outcome. Two outcomes with the same decision, metric "
        "and outcome_id are one outcome; without it, the same value and timestamp are.",
    )


class OutcomeResult(BaseModel):
    decision_id: str
    metric: str | None
    status: Status


class BatchOutcomeIn(RequestModel):
    items: list[OutcomeIn] = Field(min_length=1, max_length=MAX_BATCH)


class BatchOutcomeResult(BaseModel):
    items: list[OutcomeResult]
    counts: dict[Status, int]
