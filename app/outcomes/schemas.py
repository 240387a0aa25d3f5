"""Outcome API shapes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from app.schemas import BoundedFloat, DecisionId, MetricName, RequestModel

MAX_BATCH = 10_000
Status = Literal["accepted", "duplicate", "late", "unknown_decision"]
OutcomeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]


class OutcomeIn(RequestModel):
    decision_id: DecisionId
    value: BoundedFloat = Field(description="The reward or metric value (|value| <= 1e15).")
    metric: MetricName | None = Field(
        None, description="Metric name; the experiment's primary metric when omitted."
    )
    timestamp: AwareDatetime | None = Field(
        None, description="When the outcome happened (with a UTC offset); now when omitted."
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
