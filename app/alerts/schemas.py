"""Alert API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AlertOut(BaseModel):
    id: int
    experiment: str | None = Field(description="The experiment's key; null for global alerts.")
    experiment_id: int | None
    kind: str = Field(description="psi_drift, reward_drift, srm, guardrail, rollout, ...")
    key: str = Field(description="The condition: at most one open alert per key.")
    severity: str = Field(description="info, warning or critical.")
    message: str
    evidence: dict[str, Any] = Field(description="The numbers that raised it.")
    created_at: datetime
    resolved_at: datetime | None
