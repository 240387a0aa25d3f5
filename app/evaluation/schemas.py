"""Counterfactual evaluation and promotion API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from app.schemas import FiniteFloat, RequestModel, ResponseModel

CandidateName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class EvaluationRequest(RequestModel):
    candidates: dict[CandidateName, dict[str, Any]] = Field(
        default_factory=dict,
        max_length=10,
        description="name -> contextual settings to try (exploration, interactions, "
        "learning_rate, cb_type, min_probability, bits), merged over the experiment's current "
        'ones; e.g. {"greedy": {"exploration": {"algorithm": "epsilon", "epsilon": 0.01}}}.',
    )
    limit: int = Field(
        100_000, ge=10, le=1_000_000, description="Evaluate on the most recent closed decisions."
    )
    alpha: FiniteFloat = Field(0.05, gt=0, le=0.2)


class EstimateRow(ResponseModel):
    candidate: str
    estimator: str
    estimate: float | None
    std_error: float | None
    ci_low: float | None
    ci_high: float | None
    effective_sample_size: float | None
    note: str


class EvaluationOut(ResponseModel):
    experiment: str
    decisions: int = Field(description="Closed decisions evaluated on.")
    first_decided_at: datetime
    last_decided_at: datetime
    alpha: float
    candidates: dict[str, dict[str, Any]] = Field(
        description="Each candidate's full settings (current ones included as 'current')."
    )
    estimates: list[EstimateRow]


class PromotionRequest(RequestModel):
    settings: dict[str, Any] = Field(
        description="The contextual settings to serve from now on, merged over the current "
        "ones (as evaluated)."
    )
