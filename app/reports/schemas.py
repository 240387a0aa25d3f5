"""The experiment report's JSON schema (GET /v1/experiments/{key}/report).

Numbers that do not exist are null, never NaN; an unbounded interval end is null too (an
always-valid interval before `min_n` observations is (-inf, inf): both ends null).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.experiments.schemas import AnalysisPlan
from app.schemas import ResponseModel

Action = Literal["keep_running", "ship", "no_difference", "investigate"]
Role = Literal["primary", "guardrail", "secondary"]


class Interval(ResponseModel):
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None = None


class ArmSummary(ResponseModel):
    arm: str
    n: int = Field(description="Closed decisions counted for this metric.")
    mean: float | None
    ci_low: float | None = Field(description="Fixed-horizon 1 - alpha interval of the mean.")
    ci_high: float | None
    cs_low: float | None = Field(description="Always-valid (confidence-sequence) interval.")
    cs_high: float | None


class Bayes(ResponseModel):
    arm: str
    p_best: float
    chance_to_beat_control: float
    expected_loss: float


class Comparison(ResponseModel):
    arm: str = Field(description="The treatment arm, compared with the control.")
    absolute: Interval = Field(description="Fixed-horizon difference of means (t / z test).")
    relative: Interval | None = Field(description="Fixed-horizon relative lift (delta method).")
    always_valid: Interval = Field(
        description="Asymptotic confidence sequence of the difference and its always-valid "
        "p-value: valid however often the report is read."
    )
    always_valid_relative: Interval | None = Field(
        description="The always-valid interval divided by the control mean (null if it is 0)."
    )
    p_adjusted: float | None = Field(
        description="The always-valid p-value, Holm-adjusted within its family: the primary "
        "metric's treatments, or the guardrails' / secondary metrics' (metric, arm) pairs."
    )
    significant: bool = Field(description="The always-valid test rejects (after adjustment).")
    better: bool | None = Field(description="Significant in the metric's good direction.")
    harm: bool | None = Field(
        description="Guardrails: significantly worse by more than the tolerance."
    )


class MetricReport(ResponseModel):
    metric: str
    role: Role
    kind: Literal["binary", "continuous"] | None
    higher_is_better: bool
    tolerance: float
    missing: Literal["zero", "skip", "default_reward"]
    arms: list[ArmSummary]
    comparisons: list[Comparison]
    bayes: list[Bayes] | None
    error: str | None = Field(description="Why some statistics could not be computed.")


class TrafficArm(ResponseModel):
    arm: str
    decisions: int
    share: float | None
    expected_share: float | None = Field(
        description="The share the served allocation implies: the sum of the logged "
        "allocation over decisions (the policy versions' probabilities), over all decisions."
    )


class Srm(ResponseModel):
    statistic: float | None
    p_value: float | None
    mismatch: bool
    threshold: float
    method: Literal["propensities"]
    note: str | None


class OffPolicyArm(ResponseModel):
    arm: str
    naive_mean: float | None
    ips: float | None
    ips_ci_low: float | None
    ips_ci_high: float | None
    ips_cs_low: float | None = Field(description="Always-valid interval of the IPS value.")
    ips_cs_high: float | None
    snips: float | None
    effective_sample_size: float | None
    naive_outside_cs: bool = Field(
        description="The naive mean lies outside the IPS always-valid interval."
    )


class OffPolicy(ResponseModel):
    metric: str
    arms: list[OffPolicyArm]
    note: str | None


class Look(ResponseModel):
    look: int
    information_fraction: float
    reached_at: datetime | None
    z: float | None
    upper: float
    lower: float
    decision: Literal["continue", "reject", "accept"] | None


class GroupSequential(ResponseModel):
    arm: str
    spending: str
    looks: list[Look]
    status: Literal["not_started", "continue", "reject", "accept"]


class Version(ResponseModel):
    number: int
    created_at: datetime
    allocation: dict[str, float]


class PolicyHistory(ResponseModel):
    type: str
    current_version: int
    versions: int
    recent: list[Version] = Field(description="The last versions (at most 20), newest last.")


class Series(ResponseModel):
    """One entry per period, ending at `period_ends` (cumulative where it says so)."""

    period_ends: list[datetime]
    decisions: dict[str, list[int]] = Field(description="Decisions per arm in each period.")
    allocation: dict[str, list[float | None]] = Field(
        description="Served allocation averaged over each period's decisions."
    )
    primary_n: dict[str, list[int]] = Field(description="Cumulative closed decisions per arm.")
    primary_mean: dict[str, list[float | None]]
    primary_cs_low: dict[str, list[float | None]]
    primary_cs_high: dict[str, list[float | None]]
    lift: dict[str, list[float | None]] = Field(description="Treatment - control, cumulative.")
    lift_cs_low: dict[str, list[float | None]]
    lift_cs_high: dict[str, list[float | None]]
    srm_p_value: list[float | None]


class Recommendation(ResponseModel):
    action: Action
    arm: str | None
    text: str
    rule: str = Field(description="The rule that produced it, in words.")


class ExperimentInfo(ResponseModel):
    key: str
    name: str
    status: str
    policy_type: str
    bandit: bool
    primary_metric: str
    control: str
    arms: list[str]
    started_at: datetime | None
    ended_at: datetime | None
    winner: str | None
    reward_window_s: float


class Report(ResponseModel):
    experiment: ExperimentInfo
    as_of: datetime
    closed_through: datetime = Field(description="Decisions up to here count for metrics.")
    period_s: float
    plan: AnalysisPlan
    traffic: list[TrafficArm]
    decisions: int
    closed_decisions: int
    srm: Srm | None
    policy: PolicyHistory
    metrics: list[MetricReport]
    off_policy: OffPolicy | None
    group_sequential: list[GroupSequential] | None
    series: Series
    recommendation: Recommendation
