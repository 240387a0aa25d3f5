"""Decision API shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.schemas import DecisionId, RequestModel, UnitId

MAX_BATCH = 10_000
# Checked feature by feature in app.decisions.context, for errors that name the feature.
Context = dict[str, Any]


class DecideRequest(RequestModel):
    unit_id: UnitId = Field(description="The unit (user, session, request...) to decide for.")
    context: Context | None = Field(
        None,
        description="Features of this request: flat {name: value} or namespaced "
        "{namespace: {name: value}}; values are strings, numbers or booleans.",
    )
    decision_id: DecisionId | None = Field(
        None,
        description="Your id for this decision. Retrying with the same id returns the "
        "stored answer. Generated when omitted.",
    )


class DecideResponse(BaseModel):
    decision_id: str
    variant: str
    payload: Any
    propensity: float = Field(description="Probability the served variant had.")
    policy_version: int
    fallback: bool
    experimental: bool = Field(
        description="False when the policy did not draw this answer (paused, concluded, "
        "outside coverage); such decisions are never learned from."
    )


class BatchDecideRequest(RequestModel):
    items: list[DecideRequest] = Field(min_length=1, max_length=MAX_BATCH)


class BatchDecideResponse(BaseModel):
    items: list[DecideResponse]
