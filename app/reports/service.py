"""One experiment report: SQL aggregates in, the statistics engine's numbers out.

Every number comes from `app.stats` applied to sufficient statistics the database computed
(`queries.py`): nothing here re-implements a test. The report is a pure function of the data
stored by `as_of` (decisions made by then; outcomes received by then; metrics from decisions
whose reward window had closed by then), so the same `as_of` gives the same report.

docs/reports.md describes every field and the recommendation rules.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, Invalid
from app.experiments.models import Experiment
from app.experiments.schemas import AnalysisPlan, MetricPlan
from app.learning.models import PolicyVersion
from app.reports import queries, rollups
from app.reports.schemas import (
    ArmSummary,
    Bayes,
    Comparison,
    ExperimentInfo,
    GroupSequential,
    Interval,
    Look,
    MetricReport,
    OffPolicy,
    OffPolicyArm,
    PolicyHistory,
    Recommendation,
    Report,
    Series,
    Srm,
    TrafficArm,
    Version,
)
from app.stats.bayes import summarize
from app.stats.common import MetricKind
from app.stats.fixed_horizon import adjust_p_values, compare_to_control
from app.stats.group_sequential import Decision as GSDecision
from app.stats.group_sequential import GroupSequentialDesign, look_statistic
from app.stats.sequential import (
    DEFAULT_MIN_N,
    SequentialResult,
    asymptotic_cs,
    asymptotic_cs_margin,
    asymptotic_cs_rho_squared,
)
from app.stats.srm import DEFAULT_THRESHOLD, srm_check_adaptive
from app.stats.sufficient import SampleStats, StatsInputError

MAX_PERIODS = 48
"""Time series have at most this many periods."""
NICE_WIDTHS_S = (60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 7 * 86400)
RECENT_VERSIONS = 20


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def period_width(span: timedelta) -> float:
    """The smallest 'nice' width (1 min .. 1 week) giving at most MAX_PERIODS periods."""
    seconds = max(span.total_seconds(), 1.0)
    for width in NICE_WIDTHS_S:
        if seconds / width <= MAX_PERIODS:
            return float(width)
    return float(math.ceil(seconds / MAX_PERIODS / 86400.0) * 86400)


@dataclass
class _Metric:
    plan: MetricPlan | None  # None: the primary metric
    name: str
    role: str
    missing: float | None
    cells: list[queries.MetricCell]


def build_report(*, session: Session, experiment: Experiment, as_of: datetime | None) -> Report:
    now = utcnow()
    if as_of is None:
        as_of = now
    elif as_of > now:
        raise Invalid("query.as_of", "not_future", "as_of cannot be in the future")
    if experiment.started_at is None:
        raise Conflict(
            f"experiment {experiment.key!r} has not started: there is nothing to report",
            kind="not-started",
        )
    if as_of < experiment.started_at:
        raise Invalid("query.as_of", "after_start", "as_of is before the experiment started")
    plan = AnalysisPlan.model_validate(experiment.analysis)
    arms = [v.key for v in experiment.variants]
    control = next(i for i, v in enumerate(experiment.variants) if v.is_control)
    width = period_width(as_of - experiment.started_at)
    aligned = width % rollups.HOUR_S == 0
    # Periods of whole hours start on an hour, so that hourly rollups nest in them.
    start = _floor_hour(experiment.started_at) if aligned else experiment.started_at
    n_periods = max(1, math.ceil((as_of - start).total_seconds() / width))
    closed_through = as_of - timedelta(seconds=experiment.reward_window_s)

    versions = list(
        session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.experiment_id == experiment.id, PolicyVersion.created_at <= as_of)
            .order_by(PolicyVersion.number)
        )
    )
    allocation_of = {v.number: np.asarray(v.state["probabilities"], float) for v in versions}
    traffic = _traffic_cells(session, experiment, as_of, start, width, aligned)
    metrics = _metrics(session, experiment, as_of, start, width, aligned)
    primary = metrics[0]
    kind_of = {m.name: _kind(m) for m in metrics}

    traffic_arms, srm, decisions = _traffic(arms, traffic, allocation_of)
    reports = [_metric_report(m, arms, control, plan, kind_of[m.name]) for m in metrics]
    _adjust(reports, plan.alpha)
    bandit = experiment.policy["type"] != "fixed"
    off_policy = _off_policy(primary, arms, plan) if bandit else None
    sequential = (
        _group_sequential(primary, arms, control, plan, kind_of[primary.name], start, width)
        if plan.group_sequential is not None
        else None
    )
    series = _series(primary, traffic, allocation_of, arms, control, plan, kind_of[primary.name])
    series_ends = [start + timedelta(seconds=width * (k + 1)) for k in range(n_periods)]
    series_obj = Series(period_ends=series_ends, **_cut(series, n_periods))
    closed = sum(c.n for c in primary.cells)
    report = Report(
        experiment=ExperimentInfo(
            key=experiment.key,
            name=experiment.name,
            status=experiment.status,
            policy_type=experiment.policy["type"],
            bandit=bandit,
            primary_metric=experiment.primary_metric,
            control=arms[control],
            arms=arms,
            started_at=experiment.started_at,
            ended_at=experiment.ended_at,
            winner=experiment.winner,
            reward_window_s=experiment.reward_window_s,
        ),
        as_of=as_of,
        closed_through=closed_through,
        period_s=width,
        plan=plan,
        traffic=traffic_arms,
        decisions=decisions,
        closed_decisions=closed,
        srm=srm,
        policy=PolicyHistory(
            type=experiment.policy["type"],
            current_version=versions[-1].number if versions else 0,
            versions=len(versions),
            recent=[
                Version(
                    number=v.number,
                    created_at=v.created_at,
                    allocation=dict(zip(arms, map(float, allocation_of[v.number]), strict=True)),
                )
                for v in versions[-RECENT_VERSIONS:]
            ],
        ),
        metrics=reports,
        off_policy=off_policy,
        group_sequential=sequential,
        series=series_obj,
        recommendation=Recommendation(action="keep_running", arm=None, text="", rule=""),
    )
    report.recommendation = recommend(report, experiment, now=as_of)
    return report


# --- data ----------------------------------------------------------------------------------


def metric_specs(experiment: Experiment) -> list[tuple[MetricPlan | None, str, str, float | None]]:
    """(plan, metric, role, missing) of every metric the report computes: the primary metric
    (a decision without outcome counts as the default reward), then guardrails, secondary."""
    plan = AnalysisPlan.model_validate(experiment.analysis)
    specs: list[tuple[MetricPlan | None, str, str, float | None]] = [
        (None, experiment.primary_metric, "primary", experiment.default_reward)
    ]
    for role, family in (("guardrail", plan.guardrails), ("secondary", plan.secondary)):
        for m in family:
            specs.append((m, m.metric, role, 0.0 if m.missing == "zero" else None))
    return specs


def _floor_hour(at: datetime) -> datetime:
    return rollups.hour_start(math.floor((at - rollups.EPOCH).total_seconds() / rollups.HOUR_S))


def _to_period(hour: int, start: datetime, width: float) -> int:
    return math.floor((rollups.hour_start(hour) - start).total_seconds() / width)


def _traffic_cells(
    session: Session,
    experiment: Experiment,
    as_of: datetime,
    start: datetime,
    width: float,
    aligned: bool,
) -> list[queries.TrafficCell]:
    """Rolled-up hours (final by as_of) plus the raw decisions after them."""
    before = (
        rollups.usable_hour(session, experiment, rollups.TRAFFIC, None, as_of) if aligned else None
    )
    cells = [
        replace(c, period=_to_period(c.period, start, width))
        for c in (rollups.traffic_rollups(session, experiment, before) if before else [])
    ]
    return cells + queries.traffic_cells(
        session=session,
        experiment=experiment,
        as_of=as_of,
        start=start,
        width_s=width,
        decided_from=rollups.hour_start(before) if before else None,
    )


def _metrics(
    session: Session,
    experiment: Experiment,
    as_of: datetime,
    start: datetime,
    width: float,
    aligned: bool,
) -> list[_Metric]:
    out = []
    for spec, name, role, missing in metric_specs(experiment):
        before = rollups.usable_hour(session, experiment, name, missing, as_of) if aligned else None
        cells = [
            replace(cell, period=_to_period(hour, start, width))
            for hour, cell in (
                rollups.metric_rollups(session, experiment, name, before) if before else []
            )
        ]
        cells += queries.metric_cells(
            session=session,
            experiment=experiment,
            metric=name,
            missing=missing,
            as_of=as_of,
            start=start,
            width_s=width,
            decided_from=rollups.hour_start(before) if before else None,
        )
        out.append(_Metric(spec, name, role, missing, cells))
    return out


def _arm_stats(cells: Sequence[queries.MetricCell], n_arms: int) -> list[SampleStats]:
    n = np.zeros(n_arms, dtype=np.int64)
    total = np.zeros(n_arms)
    squares = np.zeros(n_arms)
    for c in cells:
        n[c.arm] += c.n
        total[c.arm] += c.total
        squares[c.arm] += c.sum_squares
    return [_sample(int(a), float(b), float(s)) for a, b, s in zip(n, total, squares, strict=True)]


def _sample(n: int, total: float, squares: float) -> SampleStats:
    # Sums from SQL carry rounding: clamp sum(y^2) up to the Cauchy-Schwarz bound it must meet.
    if n > 0:
        squares = max(squares, total * total / n)
    else:
        total = squares = 0.0
    return SampleStats(n, total, squares)


def _kind(metric: _Metric) -> MetricKind:
    """Binary when every value counted was 0 or 1: all values in [0, 1] and sum(y^2) == sum(y)
    (y^2 <= y on [0, 1], with equality only at 0 and 1), whatever the cells' split."""
    cells = [c for c in metric.cells if c.n]
    if not cells:
        return "continuous"
    in_unit = all(c.minimum >= 0.0 and c.maximum <= 1.0 for c in cells)
    squares = sum(c.sum_squares for c in cells)
    total = sum(c.total for c in cells)
    n = sum(c.n for c in cells)
    return "binary" if in_unit and abs(squares - total) <= 1e-9 * max(1, n) else "continuous"


# --- per metric ------------------------------------------------------------------------------


def _arm_summary(
    name: str, s: SampleStats, kind: MetricKind, plan: AnalysisPlan, k: int
) -> ArmSummary:
    if s.n == 0:
        return ArmSummary(
            arm=name, n=0, mean=None, ci_low=None, ci_high=None, cs_low=None, cs_high=None
        )
    mean = s.mean
    if s.n < 2:
        return ArmSummary(
            arm=name, n=s.n, mean=mean, ci_low=None, ci_high=None, cs_low=None, cs_high=None
        )
    sd = math.sqrt(mean * (1 - mean)) if kind == "binary" else math.sqrt(s.variance)
    z = float(scipy_stats.norm.isf(plan.alpha / 2))
    half = z * sd / math.sqrt(s.n)
    rho2 = asymptotic_cs_rho_squared(max(plan.planned_decisions / k, 2.0), plan.alpha)
    cs = float(asymptotic_cs_margin(s.n, rho2, plan.alpha)) * sd
    return ArmSummary(
        arm=name,
        n=s.n,
        mean=mean,
        ci_low=mean - half,
        ci_high=mean + half,
        cs_low=mean - cs if s.n >= DEFAULT_MIN_N else None,
        cs_high=mean + cs if s.n >= DEFAULT_MIN_N else None,
    )


def _metric_report(
    m: _Metric, arms: list[str], control: int, plan: AnalysisPlan, kind: MetricKind
) -> MetricReport:
    stats = _arm_stats(m.cells, len(arms))
    spec = m.plan
    higher = plan.higher_is_better if spec is None else spec.higher_is_better
    tolerance = 0.0 if spec is None else spec.tolerance
    summaries = [
        _arm_summary(a, s, kind, plan, len(arms)) for a, s in zip(arms, stats, strict=True)
    ]
    errors: list[str] = []
    treatments = [i for i in range(len(arms)) if i != control]
    fixed: dict[int, Any] = {}
    try:
        results = compare_to_control(
            stats[control], [stats[i] for i in treatments], kind=kind, alpha=plan.alpha
        )
        fixed = dict(zip(treatments, results, strict=True))
    except StatsInputError as exc:
        errors.append(f"fixed-horizon: {exc}")
    comparisons = []
    for i in treatments:
        always = _always_valid(stats[control], stats[i], kind, plan)
        c = fixed.get(i)
        absolute = (
            Interval(
                estimate=c.absolute.estimate,
                ci_low=_finite(c.absolute.ci_low),
                ci_high=_finite(c.absolute.ci_high),
                p_value=c.absolute.p_value,
            )
            if c is not None
            else Interval(estimate=None, ci_low=None, ci_high=None)
        )
        relative = (
            Interval(
                estimate=c.relative.estimate,
                ci_low=_finite(c.relative.ci_low),
                ci_high=_finite(c.relative.ci_high),
                p_value=c.relative.p_value,
            )
            if c is not None and c.relative is not None
            else None
        )
        comparisons.append(
            Comparison(
                arm=arms[i],
                absolute=absolute,
                relative=relative,
                always_valid=always,
                always_valid_relative=_relative(always, stats[control]),
                p_adjusted=None,
                significant=False,
                better=None,
                harm=None,
            )
        )
    bayes = None
    if all(s.n >= 2 for s in stats):
        try:
            summary = summarize(stats, kind=kind, control=control, lower_is_better=not higher)
            bayes = [
                Bayes(
                    arm=a,
                    p_best=float(summary.p_best[j]),
                    chance_to_beat_control=float(summary.chance_to_beat_control[j]),
                    expected_loss=float(summary.expected_loss[j]),
                )
                for j, a in enumerate(arms)
            ]
        except (StatsInputError, ArithmeticError) as exc:
            errors.append(f"bayesian: {exc}")
    report = MetricReport(
        metric=m.name,
        role=m.role,
        kind=kind if any(s.n for s in stats) else None,
        higher_is_better=higher,
        tolerance=tolerance,
        missing="default_reward" if spec is None else spec.missing,
        arms=summaries,
        comparisons=comparisons,
        bayes=bayes,
        error="; ".join(errors) or None,
    )
    return report


def _always_valid(
    control: SampleStats, treatment: SampleStats, kind: MetricKind, plan: AnalysisPlan
) -> Interval:
    result = _cs(control, treatment, kind, plan)
    if result is None:
        return Interval(estimate=None, ci_low=None, ci_high=None, p_value=None)
    return Interval(
        estimate=result.estimate,
        ci_low=_finite(result.ci_low),
        ci_high=_finite(result.ci_high),
        p_value=result.p_value,
    )


def _cs(
    control: SampleStats,
    treatment: SampleStats,
    kind: MetricKind,
    plan: AnalysisPlan,
    previous: SequentialResult | None = None,
) -> SequentialResult | None:
    if control.n < 2 or treatment.n < 2:
        return None
    try:
        return asymptotic_cs(
            control,
            treatment,
            planned_n=plan.planned_decisions,
            alpha=plan.alpha,
            kind=kind,
            previous=previous,
        )
    except StatsInputError:
        return None


def _relative(always: Interval, control: SampleStats) -> Interval | None:
    if control.n == 0 or control.mean == 0 or always.estimate is None:
        return None
    scale = abs(control.mean)

    def div(x: float | None) -> float | None:
        return None if x is None else x / scale

    return Interval(
        estimate=div(always.estimate),
        ci_low=div(always.ci_low),
        ci_high=div(always.ci_high),
        p_value=always.p_value,
    )


def _adjust(reports: list[MetricReport], alpha: float) -> None:
    """Significance of the always-valid tests, Holm-adjusted within each family: the primary
    metric's treatments (with one treatment, nothing changes), the guardrails' and the
    secondary metrics' (metric, arm) pairs, so that many arms or metrics do not multiply
    false alarms."""
    for role in ("primary", "guardrail", "secondary"):
        family = [(r, c) for r in reports if r.role == role for c in r.comparisons]
        if not family:
            continue
        p = [
            c.always_valid.p_value if c.always_valid.p_value is not None else 1.0 for _, c in family
        ]
        adjusted = adjust_p_values(p, method="holm", alpha=alpha).p_adjusted
        for (r, c), p_adj in zip(family, adjusted, strict=True):
            c.p_adjusted = p_adj
            c.significant = p_adj <= alpha and c.always_valid.estimate is not None
            if c.significant:
                up = (c.always_valid.estimate or 0.0) > 0
                c.better = up == r.higher_is_better
            if role == "guardrail":
                c.harm = _harm(r, c)


def _harm(r: MetricReport, c: Comparison) -> bool:
    """Significantly worse by more than the tolerance (relative to the control mean)."""
    if not c.significant or c.better:
        return False
    control = next(a for a in r.arms if a.arm not in {x.arm for x in r.comparisons})
    margin = r.tolerance * abs(control.mean or 0.0)
    if r.higher_is_better:
        return c.always_valid.ci_high is not None and c.always_valid.ci_high < -margin
    return c.always_valid.ci_low is not None and c.always_valid.ci_low > margin


# --- traffic and SRM -------------------------------------------------------------------------


def _traffic(
    arms: list[str],
    cells: Sequence[queries.TrafficCell],
    allocation_of: dict[int, np.ndarray],
) -> tuple[list[TrafficArm], Srm | None, int]:
    observed = np.zeros(len(arms), dtype=np.int64)
    expected = np.zeros(len(arms))
    for c in cells:
        observed[c.arm] += c.n
        probabilities = allocation_of.get(c.policy_version)
        if probabilities is not None:
            expected += c.n * probabilities
    total = int(observed.sum())
    rows = [
        TrafficArm(
            arm=a,
            decisions=int(observed[i]),
            share=observed[i] / total if total else None,
            expected_share=expected[i] / total if total else None,
        )
        for i, a in enumerate(arms)
    ]
    if total == 0:
        return rows, None, 0
    try:
        result = srm_check_adaptive(observed, expected)
    except StatsInputError as exc:
        return (
            rows,
            Srm(
                statistic=None,
                p_value=None,
                mismatch=False,
                threshold=DEFAULT_THRESHOLD,
                method="propensities",
                note=str(exc),
            ),
            total,
        )
    return (
        rows,
        Srm(
            statistic=_finite(result.statistic),
            p_value=_finite(result.p_value),
            mismatch=result.mismatch,
            threshold=result.threshold,
            method="propensities",
            note=None,
        ),
        total,
    )


# --- off-policy ------------------------------------------------------------------------------


def _off_policy(m: _Metric, arms: list[str], plan: AnalysisPlan) -> OffPolicy:
    """Each arm's value by inverse propensity weighting: (1/N) sum 1{a_i = a} v_i / p_i over all
    N closed decisions, unbiased even when the allocation moved (the naive mean is not)."""
    k = len(arms)
    n_all = sum(c.n for c in m.cells)
    sums = np.zeros((k, 5))
    naive = np.zeros((k, 2))
    for c in m.cells:
        sums[c.arm] += (
            c.ips_total,
            c.ips_sum_squares,
            c.inverse_propensity,
            c.inverse_propensity_squares,
            c.n,
        )
        naive[c.arm] += (c.total, c.n)
    rows = []
    rho2 = asymptotic_cs_rho_squared(float(max(plan.planned_decisions, 2)), plan.alpha / k)
    z = float(scipy_stats.norm.isf(plan.alpha / (2 * k)))
    disagree = []
    for a in range(k):
        t, t2, w, w2, pulls = sums[a]
        mean_naive = naive[a, 0] / naive[a, 1] if naive[a, 1] else None
        if n_all < 2 or pulls == 0:
            rows.append(
                OffPolicyArm(
                    arm=arms[a],
                    naive_mean=mean_naive,
                    ips=None,
                    ips_ci_low=None,
                    ips_ci_high=None,
                    ips_cs_low=None,
                    ips_cs_high=None,
                    snips=None,
                    effective_sample_size=None,
                    naive_outside_cs=False,
                )
            )
            continue
        ips = t / n_all
        var = max((t2 - n_all * ips * ips) / (n_all - 1), 0.0)
        sd = math.sqrt(var)
        half = z * sd / math.sqrt(n_all)
        cs = (
            float(asymptotic_cs_margin(n_all, rho2, plan.alpha / k)) * sd
            if n_all >= DEFAULT_MIN_N
            else math.inf
        )
        outside = (
            mean_naive is not None
            and math.isfinite(cs)
            and not (ips - cs <= mean_naive <= ips + cs)
        )
        if outside:
            disagree.append(arms[a])
        rows.append(
            OffPolicyArm(
                arm=arms[a],
                naive_mean=mean_naive,
                ips=ips,
                ips_ci_low=ips - half,
                ips_ci_high=ips + half,
                ips_cs_low=_finite(ips - cs),
                ips_cs_high=_finite(ips + cs),
                snips=t / w if w > 0 else None,
                effective_sample_size=w * w / w2 if w2 > 0 else None,
                naive_outside_cs=outside,
            )
        )
    note = (
        f"The naive mean of {', '.join(disagree)} lies outside its inverse-propensity "
        "always-valid interval: the allocation moved with the data, so naive means are "
        "biased here; read the IPS values."
        if disagree
        else None
    )
    return OffPolicy(metric=m.name, arms=rows, note=note)


# --- time series and group-sequential looks ----------------------------------------------


def _cumulative(cells: Sequence[queries.MetricCell], k: int, n_periods: int) -> np.ndarray:
    """(periods, arms, 3): cumulative n, total, sum of squares at each period's end."""
    grid = np.zeros((n_periods, k, 3))
    for c in cells:
        p = min(max(c.period, 0), n_periods - 1)
        grid[p, c.arm] += (c.n, c.total, c.sum_squares)
    return np.cumsum(grid, axis=0)


def _cum_sample(cum: np.ndarray, period: int, arm: int) -> SampleStats:
    """An arm's cumulative statistics at a period's end (from `_cumulative`)."""
    n, total, squares = cum[period, arm]
    return _sample(int(n), float(total), float(squares))


def _n_periods(cells: Sequence[queries.MetricCell], traffic: Sequence[queries.TrafficCell]) -> int:
    # A period can be -1: SQLite's whole-second timestamps put a decision made in the start's
    # first second before the (fractional) start; such cells count in period 0.
    periods = [c.period for c in cells] + [c.period for c in traffic]
    return max(0, *periods) + 1


def _series(
    m: _Metric,
    traffic: Sequence[queries.TrafficCell],
    allocation_of: dict[int, np.ndarray],
    arms: list[str],
    control: int,
    plan: AnalysisPlan,
    kind: MetricKind,
) -> dict[str, Any]:
    k = len(arms)
    n_periods = _n_periods(m.cells, traffic)
    decided = np.zeros((n_periods, k), dtype=np.int64)
    served = np.zeros((n_periods, k))
    for c in traffic:
        period = min(max(c.period, 0), n_periods - 1)
        decided[period, c.arm] += c.n
        probabilities = allocation_of.get(c.policy_version)
        if probabilities is not None:
            served[period] += c.n * probabilities
    cum = _cumulative(m.cells, k, n_periods)
    out: dict[str, Any] = defaultdict(dict)
    srm_p: list[float | None] = []
    observed_cum = np.cumsum(decided, axis=0)
    expected_cum = np.cumsum(served, axis=0)
    for a, name in enumerate(arms):
        out["decisions"][name] = decided[:, a].tolist()
        totals = decided.sum(axis=1)
        out["allocation"][name] = [
            float(served[p, a] / totals[p]) if totals[p] else None for p in range(n_periods)
        ]
        out["primary_n"][name] = [int(x) for x in cum[:, a, 0]]
        means, lows, highs = [], [], []
        for p in range(n_periods):
            s = _cum_sample(cum, p, a)
            summary = _arm_summary(name, s, kind, plan, k)
            means.append(summary.mean)
            lows.append(summary.cs_low)
            highs.append(summary.cs_high)
        out["primary_mean"][name] = means
        out["primary_cs_low"][name] = lows
        out["primary_cs_high"][name] = highs
        if a == control:
            continue
        estimate, low, high = [], [], []
        previous: SequentialResult | None = None
        for p in range(n_periods):
            ctl = _cum_sample(cum, p, control)
            trt = _cum_sample(cum, p, a)
            result = _cs(ctl, trt, kind, plan, previous)
            if result is not None:
                previous = result
            estimate.append(_finite(result.estimate) if result else None)
            low.append(_finite(result.ci_low) if result else None)
            high.append(_finite(result.ci_high) if result else None)
        out["lift"][name] = estimate
        out["lift_cs_low"][name] = low
        out["lift_cs_high"][name] = high
    for p in range(n_periods):
        if observed_cum[p].sum() == 0:
            srm_p.append(None)
            continue
        try:
            srm_p.append(_finite(srm_check_adaptive(observed_cum[p], expected_cum[p]).p_value))
        except StatsInputError:
            srm_p.append(None)
    out["srm_p_value"] = srm_p
    return dict(out)


def _cut(series: dict[str, Any], n_periods: int) -> dict[str, Any]:
    """Pad or trim every list to n_periods (the last periods may have no decision at all):
    per-period counts pad with 0, cumulative counts with their last value, the rest with
    null."""

    def fit(key: str, values: list[Any]) -> list[Any]:
        if len(values) >= n_periods:
            return values[:n_periods]
        pad: Any = None
        if key == "decisions":
            pad = 0
        elif key == "primary_n" and values:
            pad = values[-1]
        return values + [pad] * (n_periods - len(values))

    return {
        key: fit(key, value)
        if isinstance(value, list)
        else {a: fit(key, v) for a, v in value.items()}
        for key, value in series.items()
    }


def _group_sequential(
    m: _Metric,
    arms: list[str],
    control: int,
    plan: AnalysisPlan,
    kind: MetricKind,
    start: datetime,
    width: float,
) -> list[GroupSequential]:
    """Each planned look, analysed at the end of the first period whose information reached
    its planned fraction (the report's time resolution), until a boundary is crossed."""
    assert plan.group_sequential is not None
    gs = plan.group_sequential
    design = GroupSequentialDesign.lan_demets(
        gs.looks, alpha=plan.alpha, sides=2, spending=gs.spending
    )
    k = len(arms)
    n_periods = _n_periods(m.cells, [])
    cum = _cumulative(m.cells, k, n_periods)
    out = []
    for a in range(k):
        if a == control:
            continue
        looks: list[Look] = []
        status = "not_started"
        stopped = False
        for j, fraction in enumerate(design.information_fractions.tolist(), start=1):
            target = fraction * plan.planned_decisions
            reached = [
                p for p in range(n_periods) if cum[p, control, 0] + cum[p, a, 0] >= target - 1e-9
            ]
            z = decision = when = None
            if reached and not stopped:
                p = reached[0]
                c = _cum_sample(cum, p, control)
                t = _cum_sample(cum, p, a)
                when = start + timedelta(seconds=width * (p + 1))
                try:
                    n_max = max(plan.planned_decisions, c.n + t.n)
                    z = look_statistic(c, t, kind=kind, planned_n=n_max).z
                    decision = design.decide(j, z).value
                    status = decision
                    stopped = design.decide(j, z) != GSDecision.CONTINUE
                except StatsInputError:
                    z = None
            looks.append(
                Look(
                    look=j,
                    information_fraction=fraction,
                    reached_at=when,
                    z=_finite(z),
                    upper=float(design.upper[j - 1]),
                    lower=float(design.lower[j - 1]),
                    decision=decision,
                )
            )
        out.append(GroupSequential(arm=arms[a], spending=gs.spending, looks=looks, status=status))
    return out


# --- recommendation --------------------------------------------------------------------------


def recommend(report: Report, experiment: Experiment, *, now: datetime) -> Recommendation:
    """The first rule that applies, in this order:

    1. investigate: sample ratio mismatch (p < 0.001 against the served allocation);
    2. investigate: a guardrail harmed (always-valid, Holm over guardrails, beyond tolerance);
    3. keep running: an arm has fewer than 30 closed decisions on the primary metric;
    4. ship: the best arm whose always-valid primary comparison is significantly better than
       the control, by at least minimum_effect (relative); or ship the control when every
       treatment is significantly worse;
    5. no difference: planned_decisions closed decisions reached, nothing significant;
    6. keep running, with the time to planned_decisions at the current pace.
    """
    plan = report.plan
    if report.srm is not None and report.srm.mismatch:
        return Recommendation(
            action="investigate",
            arm=None,
            text=f"Investigate: the traffic split does not match the served allocation "
            f"(SRM p = {report.srm.p_value:.2g}); results cannot be trusted until it is explained.",
            rule="SRM: chi-square of observed decisions against the sum of logged allocations, "
            f"p < {report.srm.threshold:g}",
        )
    harmed = [
        (r.metric, c.arm)
        for r in report.metrics
        if r.role == "guardrail"
        for c in r.comparisons
        if c.harm
    ]
    if harmed:
        metric, arm = harmed[0]
        return Recommendation(
            action="investigate",
            arm=arm,
            text=f"Investigate: {arm} harms guardrail {metric}.",
            rule="guardrail: always-valid test, Holm-adjusted over guardrails, worse than "
            "the control by more than the tolerance",
        )
    primary = report.metrics[0]
    small = [a.arm for a in primary.arms if a.n < DEFAULT_MIN_N]
    if small:
        return Recommendation(
            action="keep_running",
            arm=None,
            text=f"Keep running: too little data yet ({', '.join(small)} below "
            f"{DEFAULT_MIN_N} closed decisions).",
            rule=f"minimum sample: every arm needs {DEFAULT_MIN_N} closed decisions",
        )
    control_mean = next(a.mean for a in primary.arms if a.arm == report.experiment.control) or 0.0
    winners = []
    for c in primary.comparisons:
        if not (c.significant and c.better):
            continue
        lift = c.always_valid
        bound = lift.ci_low if primary.higher_is_better else lift.ci_high
        if plan.minimum_effect > 0 and control_mean == 0:
            continue  # a relative minimum effect cannot be judged against a zero control mean
        needed = plan.minimum_effect * abs(control_mean)
        if bound is not None and abs(bound) >= needed:
            winners.append((abs(lift.estimate or 0.0), c.arm))
    if winners:
        arm = max(winners)[1]
        return Recommendation(
            action="ship",
            arm=arm,
            text=f"Ship {arm}: it beats {report.experiment.control} on "
            f"{primary.metric} (always-valid test at alpha {plan.alpha:g}).",
            rule="always-valid confidence sequence of the primary metric excludes 0 in the good "
            f"direction, by at least minimum_effect ({plan.minimum_effect:g} relative)",
        )
    if primary.comparisons and all(
        c.significant and c.better is False for c in primary.comparisons
    ):
        return Recommendation(
            action="ship",
            arm=report.experiment.control,
            text=f"Keep {report.experiment.control}: every treatment is worse on {primary.metric}.",
            rule="every treatment's always-valid interval excludes 0 in the bad direction",
        )
    closed = report.closed_decisions
    worse = [c.arm for c in primary.comparisons if c.significant and c.better is False]
    if closed >= plan.planned_decisions and worse:
        return Recommendation(
            action="ship",
            arm=report.experiment.control,
            text=f"Keep {report.experiment.control}: {', '.join(worse)} "
            f"{'is' if len(worse) == 1 else 'are'} worse on {primary.metric} and no treatment "
            "is better.",
            rule="planned_decisions reached; no treatment significantly better, some "
            "significantly worse",
        )
    if closed >= plan.planned_decisions:
        return Recommendation(
            action="no_difference",
            arm=None,
            text=f"No difference: {closed:,} decisions (planned {plan.planned_decisions:,}) "
            f"and no arm differs from {report.experiment.control} on {primary.metric}.",
            rule="planned_decisions reached without a significant always-valid comparison",
        )
    started = experiment.started_at or now
    elapsed = max((report.closed_through - started).total_seconds(), 1.0)
    rate = closed / elapsed
    remaining = (plan.planned_decisions - closed) / rate if rate > 0 else math.inf
    return Recommendation(
        action="keep_running",
        arm=None,
        text=f"Keep running: {closed:,} of {plan.planned_decisions:,} planned decisions; "
        + (
            f"about {_duration(remaining)} more at the current pace."
            if math.isfinite(remaining)
            else "no closed decisions yet."
        ),
        rule="nothing significant yet and planned_decisions not reached",
    )


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"
