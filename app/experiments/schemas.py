"""Experiment API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from app.schemas import (
    BoundedFloat,
    FiniteFloat,
    JSONPayload,
    Key,
    MetricName,
    RequestModel,
    ResponseModel,
    SafeText,
)

PolicyType = Literal["fixed", "thompson", "epsilon_greedy", "ucb1", "contextual"]
Status = Literal[
    "draft", "running", "paused", "rolling_out", "rolled_back", "concluded", "archived"
]
Aggregation = Literal["earliest", "sum"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), SafeText]
Description = Annotated[str, StringConstraints(max_length=2000), SafeText]
Salt = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class PolicySpec(BaseModel):
    """`type` plus that policy's settings (see docs/decision-core.md), e.g.
    `{"type": "thompson", "reward": "bernoulli", "min_probability": 0.05}`."""

    # Extra keys are the policy's own settings; app.bandits.build_policy validates them.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    type: PolicyType
    update_interval_s: FiniteFloat = Field(
        60.0, ge=1, le=86_400, description="How often the learner computes a new version."
    )

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MetricPlan(RequestModel):
    """A metric the report tests besides the primary one."""

    metric: MetricName
    higher_is_better: StrictBool = Field(
        False, description="Direction of improvement (guardrails usually: lower is better)."
    )
    tolerance: FiniteFloat = Field(
        0.0,
        ge=0,
        le=10,
        description="Guardrails: relative harm tolerated (0.05 = may worsen by 5%) before "
        "the report calls it harm.",
    )
    missing: Literal["zero", "skip"] = Field(
        "zero",
        description="A decision with no outcome for this metric counts as 0 (conversions, "
        "errors) or is left out (latency, revenue per buyer).",
    )


class GroupSequentialPlan(RequestModel):
    looks: int = Field(ge=2, le=20, description="Equally spaced looks at planned_decisions.")
    spending: Literal["obrien_fleming", "pocock"] = "obrien_fleming"


class AnalysisPlan(RequestModel):
    """How the report judges the experiment. Fixed once it starts: changing the test after
    seeing data invalidates it."""

    alpha: FiniteFloat = Field(0.05, gt=0, le=0.2)
    planned_decisions: int = Field(
        10_000,
        ge=100,
        le=10**10,
        description="Total decisions (all arms) the always-valid tests are tuned for, the "
        "group-sequential design's full information, and the 'no difference' horizon.",
    )
    higher_is_better: StrictBool = Field(True, description="Direction of the primary metric.")
    minimum_effect: FiniteFloat = Field(
        0.0,
        ge=0,
        le=10,
        description="Relative lift the primary metric's always-valid interval must clear "
        "before the report recommends shipping (0.02 = +2%).",
    )
    guardrails: list[MetricPlan] = Field(default_factory=list, max_length=20)
    secondary: list[MetricPlan] = Field(default_factory=list, max_length=20)
    group_sequential: GroupSequentialPlan | None = None


class RolloutSpec(RequestModel):
    """Automatic winner rollout (docs/rollouts.md). The controller moves traffic to the winner
    in `steps`, checks guardrails at every pass and rolls back after `failure_limit` failed
    checks."""

    enabled: StrictBool = True
    steps: list[FiniteFloat] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0],
        min_length=1,
        max_length=10,
        description="Winner shares, increasing, ending at 1.0.",
    )
    min_decisions: int = Field(
        1000, ge=0, le=10**10, description="Closed decisions before a winner may be declared."
    )
    min_step_s: FiniteFloat = Field(3600.0, ge=0, le=30 * 86_400, description="Dwell per step.")
    min_step_decisions: int = Field(1000, ge=0, le=10**10, description="Decisions per step.")
    holdback: FiniteFloat = Field(
        0.0, ge=0, le=0.5, description="Share left on the other arms after the last step."
    )
    failure_limit: int = Field(1, ge=1, le=100, description="Failed checks before rollback.")
    approval: StrictBool = Field(False, description="A person approves each step after the first.")
    p_best: FiniteFloat = Field(
        0.95, ge=0.5, lt=1, description="Bandits: P(best) the winner needs."
    )
    expected_loss: FiniteFloat = Field(
        0.001, ge=0, description="Bandits: largest expected loss of the winner (metric units)."
    )
    hold_s: FiniteFloat = Field(
        0.0, ge=0, le=30 * 86_400, description="The winner must hold this long first."
    )


class VariantIn(RequestModel):
    key: Key
    payload: JSONPayload = Field(
        None, description="Any JSON, returned with every decision for this variant."
    )
    is_control: StrictBool = False
    weight: FiniteFloat | None = Field(
        None, gt=0, le=1, description="Share of units (policy `fixed` only); all or none."
    )


class ExperimentCreate(RequestModel):
    key: Key
    name: Name
    description: Description = ""
    variants: list[VariantIn] = Field(min_length=2, max_length=50)
    policy: PolicySpec
    coverage: FiniteFloat = Field(
        1.0, gt=0, le=1, description="Share of units in the experiment; the rest get control."
    )
    salt: Salt | None = Field(None, description="Hash salt; random when omitted.")
    primary_metric: MetricName = "reward"
    reward_window_s: FiniteFloat = Field(600.0, gt=0, le=90 * 86_400)
    default_reward: BoundedFloat = 0.0
    reward_aggregation: Aggregation = "earliest"
    analysis: AnalysisPlan = Field(default_factory=AnalysisPlan)
    rollout: RolloutSpec | None = Field(None, description="Automatic winner rollout; off if null.")


class ExperimentUpdate(RequestModel):
    """Fields to change. In draft anything; while running or paused only name, description,
    coverage and the policy's settings (same type)."""

    name: Name | None = None
    description: Description | None = None
    variants: list[VariantIn] | None = Field(None, min_length=2, max_length=50)
    policy: PolicySpec | None = None
    coverage: FiniteFloat | None = Field(None, gt=0, le=1)
    salt: Salt | None = None
    primary_metric: MetricName | None = None
    reward_window_s: FiniteFloat | None = Field(None, gt=0, le=90 * 86_400)
    default_reward: BoundedFloat | None = None
    reward_aggregation: Aggregation | None = None
    analysis: AnalysisPlan | None = None
    rollout: RolloutSpec | None = None


class ConcludeRequest(RequestModel):
    winner: Key = Field(description="Key of the variant every unit gets from now on.")


class VariantOut(ResponseModel):
    key: str
    payload: Any
    is_control: bool
    weight: float | None


class ExperimentOut(ResponseModel):
    key: str
    name: str
    description: str
    status: Status
    variants: list[VariantOut]
    policy: dict[str, Any]
    coverage: float
    salt: str
    primary_metric: str
    reward_window_s: float
    default_reward: float
    reward_aggregation: Aggregation
    analysis: AnalysisPlan
    winner: str | None
    rollout: dict[str, Any] | None
    policy_version: int
    allocation: dict[str, float] | None = Field(
        None,
        description="Probability each variant is served now: the policy's while running, "
        "all to the control while paused, all to the winner once concluded.",
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class RevisionOut(ResponseModel):
    number: int
    action: str
    changes: dict[str, Any]
    actor: str
    at: datetime


class PolicyVersionOut(ResponseModel):
    number: int
    kind: str
    allocation: dict[str, float]
    details: dict[str, Any]
    stats: dict[str, Any]
    closed_through: datetime | None
    decisions_counted: int
    learner: str
    created_at: datetime
    model_bytes: int | None = Field(
        None, description="Size of the saved Vowpal Wabbit model (contextual policies)."
    )
