"""Decision-rule studies: the statistics engine's stopping rules, run inside the simulation.

A scenario with a `[decision_rules]` table gets a `RuleTracker` (built by `tracker_for`) as an
engine observer. At every learner update ("look") the tracker receives the cumulative per-arm
`SampleStats` the learner has counted and runs each configured rule on them; a rule *stops* at
the first look where it declares a winner and stays stopped. `summarize_rules` turns the
replicates into false-winner rates, power and stopping times, side by side.

Every rule is the service's own code (`app.stats`), never a copy:

* ``msprt``: the mixture sequential probability ratio test of treatment - control
  (Johari, Pekelis & Walsh 2022, "Always valid inference"; `app.stats.sequential.msprt`),
  with its running state (minimum p-value, intersection of intervals) carried from look to
  look, tuned to be most sensitive at `planned_n`. Valid at every look: P(ever reject a true
  null) <= alpha.
* ``confidence_sequence``: the asymptotic confidence sequence (Waudby-Smith et al. 2024,
  "Time-uniform central limit theory and asymptotic confidence sequences";
  `app.stats.sequential.asymptotic_cs`), running intersection, rho tuned at `planned_n`;
  it stops when the sequence excludes 0.
* ``group_sequential``: a two-sided Lan-DeMets alpha-spending design (Lan & DeMets 1983;
  `app.stats.group_sequential`), `group_sequential_looks` analyses planned at equally spaced
  information fractions k / K of `planned_n` total observations. An analysis happens at the
  first look whose observed information (n_control + n_treatment) / planned_n reaches the
  next planned fraction; its boundary is computed from the spending function at the
  fractions actually observed (the flexibility alpha spending exists for), so no other look
  can stop it. An analysis at or past planned_n is the final one (fraction 1: the remaining
  alpha is spent there); a design that reaches it without rejecting has accepted H0 and never
  declares a winner.
* ``naive_t``: the fixed-horizon test (`app.stats.fixed_horizon.compare`: Welch's t, or the
  two-proportion z-test for binary metrics) at alpha, read at every look as if each were the
  only one. This is the peeking everyone does and the reason the three rules above exist: its
  false-positive rate grows with the number of looks.
* ``p_best``: the automatic-winner criterion (`app.stats.bayes.summarize`): once every arm has
  `min_samples` observations, the arm whose posterior P(best) >= `p_best` wins. It is not a
  frequentist test; the study shows what its error rate is.

**Two arms only.** Each study compares one treatment with one control; a scenario whose
environment has another number of arms is rejected (ScenarioError on ``decision_rules``). The
sequential modules test one difference at a time and the engine offers no multiplicity
handling for them (only `adjust_p_values` for fixed-horizon reports), so a K-arm study would
need a design choice (Bonferroni over the K - 1 comparisons, what "winner" means when several
treatments beat the control) that belongs in a separate study.

**Direction.** All tests are two-sided; a significantly better treatment makes the treatment
the winner, a significantly worse one makes the control the winner.

**Metric kind.** "binary" when the environment's rewards are Bernoulli and every arm's
statistics are those of 0/1 values (sum_squares == total), else "continuous" (e.g. a
default reward outside {0, 1} from the [feedback] table).

**Not enough data.** A look where the engine refuses to compute (StatsInputError: an empty
arm, zero variance, fewer than the sequential tests' `min_n` = 30 per arm, which gives an
uninformative look) simply does not stop the rule.

Configuration (every key optional)::

    [decision_rules]
    rules = ["msprt", "confidence_sequence", "group_sequential", "naive_t", "p_best"]
    alpha = 0.05                  # every frequentist rule, two-sided
    control = 0                   # the control arm's index
    planned_n = 20_000            # total observations (both arms); default: the horizon
    group_sequential_looks = 5
    spending = "obrien_fleming"   # or "pocock" (Lan-DeMets spending families)
    p_best = 0.95                 # the automatic-winner threshold
    min_samples = 100             # per arm, before the automatic-winner criterion may fire

    [decision_rules.rollout]      # the automatic rollout policy (app.bandits.rollout)
    steps = [0.5, 0.8, 1.0]
    min_decisions = 1000
    min_step_s = 0                # time is counted in decisions here
    min_step_decisions = 1000

* ``rollout``: the service's automatic winner rollout, fed by the confidence sequence (as the
  controller is fed by the report's always-valid test); it declares the winner when the
  rollout completes, so `false_winner_rate` is the false-rollout rate and the stopping rounds
  the time to a finished rollout.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from app.bandits import PolicyConfigError
from app.bandits.rollout import Evidence, RolloutPolicy, RolloutState
from app.bandits.rollout import step as rollout_step
from app.stats.common import MetricKind
from app.stats.fixed_horizon import compare
from app.stats.group_sequential import Decision, GroupSequentialDesign, look_statistic
from app.stats.sequential import SequentialResult, asymptotic_cs, msprt
from app.stats.sufficient import SampleStats, StatsInputError
from simulations.engine import (
    TIE,
    SimulationResult,
    is_strictly_best,
    metric_kind,
    p_best_leader,
)
from simulations.environments import Environment, ScenarioError
from simulations.scenario import Scenario

RULE_NAMES = ("msprt", "confidence_sequence", "group_sequential", "naive_t", "p_best")
"""The rules a [decision_rules] table runs by default; `rollout` joins them when configured."""
KNOWN_RULES = (*RULE_NAMES, "rollout")
SPENDINGS = ("obrien_fleming", "pocock")
"""Lan-DeMets families usable here (the module's "power" family needs an exponent, which the
[decision_rules] table does not take)."""

_KEYS = (
    "rules",
    "alpha",
    "control",
    "planned_n",
    "group_sequential_looks",
    "spending",
    "p_best",
    "min_samples",
    "rollout",
)


@dataclass(frozen=True)
class RuleConfig:
    """The validated `[decision_rules]` table (see the module docstring for each key)."""

    rules: tuple[str, ...]
    alpha: float
    control: int
    planned_n: int
    group_sequential_looks: int
    spending: str
    p_best: float
    min_samples: int
    rollout: RolloutPolicy | None = None

    @property
    def treatment(self) -> int:
        return 1 - self.control


def rule_config(scenario: Scenario) -> RuleConfig:
    """Validate `scenario.decision_rules`; ScenarioError names the offending key."""
    table = scenario.decision_rules
    if table is None:
        raise ScenarioError("decision_rules", "the scenario has no [decision_rules] table")
    if not isinstance(table, Mapping):
        raise ScenarioError("decision_rules", "decision_rules must be a table")
    for key in table:
        if key not in _KEYS:
            raise ScenarioError(
                f"decision_rules.{key}",
                f"unknown key {key!r} (allowed: {', '.join(sorted(_KEYS))})",
            )
    n_arms = scenario.environment.n_arms
    if n_arms != 2:
        raise ScenarioError(
            "decision_rules",
            f"decision-rule studies compare one treatment with one control (two arms); "
            f"the environment has {n_arms} arms",
        )
    default = [*RULE_NAMES, *(["rollout"] if "rollout" in table else [])]
    rules = _rules(table.get("rules", default))
    alpha = _number("alpha", table.get("alpha", 0.05))
    if not 0.0 < alpha < 1.0:
        raise ScenarioError("decision_rules.alpha", f"alpha must be in (0, 1), got {alpha!r}")
    control = _whole("control", table.get("control", 0))
    if not 0 <= control < n_arms:
        raise ScenarioError(
            "decision_rules.control", f"control must be an arm index in 0..{n_arms - 1}"
        )
    planned_n = _whole("planned_n", table.get("planned_n", scenario.horizon))
    if planned_n < 2:
        raise ScenarioError(
            "decision_rules.planned_n", "planned_n (total observations, both arms) must be >= 2"
        )
    looks = _whole("group_sequential_looks", table.get("group_sequential_looks", 5))
    if looks < 1:
        raise ScenarioError(
            "decision_rules.group_sequential_looks", "group_sequential_looks must be >= 1"
        )
    spending = table.get("spending", "obrien_fleming")
    if spending not in SPENDINGS:
        raise ScenarioError(
            "decision_rules.spending",
            f"spending must be one of {', '.join(SPENDINGS)}, got {spending!r}",
        )
    p_best = _number("p_best", table.get("p_best", 0.95))
    if not 0.5 <= p_best < 1.0:
        raise ScenarioError("decision_rules.p_best", f"p_best must be in [0.5, 1), got {p_best}")
    min_samples = _whole("min_samples", table.get("min_samples", 100))
    if min_samples < 0:
        raise ScenarioError("decision_rules.min_samples", "min_samples must be >= 0")
    rollout = None
    if "rollout" in rules or "rollout" in table:
        settings = table.get("rollout", {})
        if not isinstance(settings, Mapping):
            raise ScenarioError("decision_rules.rollout", "rollout must be a table")
        try:
            rollout = RolloutPolicy.from_json(settings)
        except PolicyConfigError as exc:
            raise ScenarioError(f"decision_rules.rollout.{exc.field}", exc.message) from None
    return RuleConfig(
        rollout=rollout,
        rules=rules,
        alpha=alpha,
        control=control,
        planned_n=planned_n,
        group_sequential_looks=looks,
        spending=str(spending),
        p_best=p_best,
        min_samples=min_samples,
    )


def tracker_for(scenario: Scenario) -> RuleTracker:
    """The observer the engine attaches to every replicate of a decision-rule scenario."""
    return RuleTracker(rule_config(scenario), scenario.environment)


# --- The rules -----------------------------------------------------------------------------


class _Rule(ABC):
    """One decision rule: `decide` returns the winning arm at this look, or None."""

    def __init__(self, config: RuleConfig) -> None:
        self.config = config

    @abstractmethod
    def decide(
        self, control: SampleStats, treatment: SampleStats, kind: MetricKind
    ) -> int | None: ...

    def by_sign(self, direction: float) -> int:
        """The winner of a two-sided rejection: the treatment if it is higher, else control."""
        return self.config.treatment if direction > 0 else self.config.control


class _Sequential(_Rule):
    """mSPRT or asymptotic CS with the running state (minimum p-value, intersected interval)."""

    def __init__(self, config: RuleConfig, method: str) -> None:
        super().__init__(config)
        self.method = method
        self.previous: SequentialResult | None = None

    def decide(self, control: SampleStats, treatment: SampleStats, kind: MetricKind) -> int | None:
        test = msprt if self.method == "msprt" else asymptotic_cs
        try:
            result = test(
                control,
                treatment,
                planned_n=float(self.config.planned_n),
                alpha=self.config.alpha,
                kind=kind,
                previous=self.previous,
            )
        except StatsInputError:
            return None
        self.previous = result
        if not result.reject:
            return None
        # The running interval excludes 0 on one side; if it has become empty (a failed
        # sequence) fall back on the current estimate's sign.
        if result.ci_low > 0 and not result.sequence_failed:
            return self.config.treatment
        if result.ci_high < 0 and not result.sequence_failed:
            return self.config.control
        return self.by_sign(result.estimate)


class _NaiveT(_Rule):
    """The fixed-horizon test at alpha, re-read at every look (no correction for peeking)."""

    def decide(self, control: SampleStats, treatment: SampleStats, kind: MetricKind) -> int | None:
        try:
            effect = compare(control, treatment, kind=kind, alpha=self.config.alpha).absolute
        except StatsInputError:
            return None
        return self.by_sign(effect.estimate) if effect.significant else None


class _GroupSequential(_Rule):
    """Two-sided Lan-DeMets design; analyses only when the information reaches a planned look."""

    def __init__(self, config: RuleConfig) -> None:
        super().__init__(config)
        looks = config.group_sequential_looks
        self.planned = [k / looks for k in range(1, looks + 1)]
        self.next = 0
        self.fractions: list[float] = []

    def decide(self, control: SampleStats, treatment: SampleStats, kind: MetricKind) -> int | None:
        planned_n = self.config.planned_n
        total = control.n + treatment.n
        fraction = total / planned_n
        if self.next >= len(self.planned) or fraction < self.planned[self.next]:
            return None
        while self.next < len(self.planned) and fraction >= self.planned[self.next]:
            self.next += 1  # a look that jumps past several planned fractions analyses once
        final = self.next == len(self.planned)
        try:
            # planned_n=max(...): an overrun final analysis is still the final one.
            look = look_statistic(control, treatment, kind=kind, planned_n=max(planned_n, total))
        except StatsInputError:
            return None  # no analysis, no alpha spent here
        self.fractions.append(1.0 if final else fraction)
        design = _design(tuple(self.fractions), self.config.alpha, self.config.spending)
        if design.decide(len(self.fractions), look.z) is Decision.REJECT:
            return self.by_sign(look.z)
        return None


class _PBest(_Rule):
    """The automatic-winner criterion: P(best) >= threshold once every arm has min_samples."""

    def decide(self, control: SampleStats, treatment: SampleStats, kind: MetricKind) -> int | None:
        config = self.config
        arms = [control, treatment] if config.control == 0 else [treatment, control]
        return p_best_leader(
            arms,
            kind=kind,
            threshold=config.p_best,
            min_samples=config.min_samples,
            control=config.control,
        )


class _Rollout(_Rule):
    """The service's automatic rollout (app.bandits.rollout) fed by the always-valid
    confidence sequence, as the controller is fed by the report; it declares the winner when
    the rollout completes, so the stopping time is the time to a finished rollout. Time is
    counted in decisions (one decision = one second of `min_step_s` and `hold_s`). Guardrails
    are not simulated and the simulated traffic keeps the scenario's allocation during the
    ramp (the winner rule is what is studied: false-rollout rate and time to rollout)."""

    def __init__(self, config: RuleConfig) -> None:
        super().__init__(config)
        assert config.rollout is not None
        self.policy = config.rollout
        self.cs = _Sequential(config, "asymptotic_cs")
        self.state = RolloutState()

    def decide(self, control: SampleStats, treatment: SampleStats, kind: MetricKind) -> int | None:
        winner = self.cs.decide(control, treatment, kind)
        if winner is None and self.cs.previous is not None and self.cs.previous.reject:
            winner = self.by_sign(self.cs.previous.estimate)  # the running rejection holds
        n = control.n + treatment.n
        evidence = Evidence(closed=n, decisions=n, winner=None if winner is None else str(winner))
        self.state = rollout_step(self.policy, self.state, evidence, now=float(n)).state
        if self.state.phase == "completed" and self.state.winner is not None:
            return int(self.state.winner)
        return None


@functools.lru_cache(maxsize=256)
def _design(fractions: tuple[float, ...], alpha: float, spending: str) -> GroupSequentialDesign:
    """The Lan-DeMets boundaries at the fractions analysed so far (a last one of 1 appended
    while the design is unfinished: a look's boundary depends only on the fractions up to it)."""
    looks = list(fractions) if fractions[-1] >= 1.0 else [*fractions, 1.0]
    return GroupSequentialDesign.lan_demets(looks, alpha=alpha, sides=2, spending=spending)


def _build(name: str, config: RuleConfig) -> _Rule:
    if name == "msprt":
        return _Sequential(config, "msprt")
    if name == "confidence_sequence":
        return _Sequential(config, "asymptotic_cs")
    if name == "group_sequential":
        return _GroupSequential(config)
    if name == "naive_t":
        return _NaiveT(config)
    if name == "rollout":
        return _Rollout(config)
    return _PBest(config)


class RuleTracker:
    """Runs every configured rule at each look of one replicate (an engine `Observer`)."""

    def __init__(self, config: RuleConfig, environment: Environment) -> None:
        self.config = config
        self.environment = environment
        self.rules = {name: _build(name, config) for name in config.rules}
        self.stopped: dict[str, tuple[int, int]] = {}

    def look(self, rounds: int, stats: Sequence[SampleStats]) -> None:
        if len(stats) != 2:
            raise ValueError(f"a decision-rule study needs two arms, got {len(stats)}")
        kind = metric_kind(self.environment, stats)
        control, treatment = stats[self.config.control], stats[self.config.treatment]
        for name, rule in self.rules.items():
            if name in self.stopped:
                continue
            winner = rule.decide(control, treatment, kind)
            if winner is not None:
                self.stopped[name] = (winner, rounds)

    def result(self) -> Mapping[str, Any]:
        """{rule: {"winner": arm or None, "stopped_at": rounds or None}} in configured order."""
        out: dict[str, dict[str, int | None]] = {}
        for name in self.rules:
            winner, stopped_at = self.stopped.get(name, (None, None))
            out[name] = {"winner": winner, "stopped_at": stopped_at}
        return out


# --- Summary over replicates ---------------------------------------------------------------


def summarize_rules(result: SimulationResult) -> pd.DataFrame:
    """One row per (policy, rule): how often each rule declared, wrongly or rightly, and when.

    * declared: share of replicates where the rule stopped with a winner;
    * false_winner_rate: share of replicates whose winner is not strictly the best arm
      (by the environment's `average_means` at the stopping round; means within TIE are
      equal, so under A/A every declaration is a false winner);
    * power: share of replicates that declared the strictly best arm; NaN when no arm is
      strictly best at any look of the replicates (A/A);
    * mean_stop_rounds / median_stop_rounds: over the replicates that stopped (NaN if none).
    """
    scenario = result.scenario
    config = rule_config(scenario)
    env = scenario.environment
    rows: list[dict[str, Any]] = []
    for policy, replicates in result.by_policy():
        if not replicates:
            continue
        look_rounds = replicates[0].rounds
        has_best = any(_margin(env.average_means(int(r) - 1)) > TIE for r in look_rounds)
        for name in config.rules:
            outcomes = [r.rules[name] for r in replicates]
            stops = [o["stopped_at"] for o in outcomes if o["winner"] is not None]
            correct = sum(
                1
                for o in outcomes
                if o["winner"] is not None and _is_best(env, o["winner"], o["stopped_at"])
            )
            total = len(outcomes)
            rows.append(
                {
                    "policy": policy,
                    "rule": name,
                    "replicates": total,
                    "declared": len(stops) / total,
                    "false_winner_rate": (len(stops) - correct) / total,
                    "power": correct / total if has_best else math.nan,
                    "mean_stop_rounds": float(np.mean(stops)) if stops else math.nan,
                    "median_stop_rounds": float(np.median(stops)) if stops else math.nan,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "policy",
            "rule",
            "replicates",
            "declared",
            "false_winner_rate",
            "power",
            "mean_stop_rounds",
            "median_stop_rounds",
        ],
    )


def _margin(means: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    """How far the best arm is above the second best (0 for a tie)."""
    ordered = np.sort(means)
    return float(ordered[-1] - ordered[-2])


def _is_best(env: Environment, arm: int, stopped_at: int) -> bool:
    return is_strictly_best(env.average_means(stopped_at - 1), arm)


# --- Config helpers ------------------------------------------------------------------------


def _rules(value: Any) -> tuple[str, ...]:
    field = "decision_rules.rules"
    if not isinstance(value, list | tuple) or not value:
        raise ScenarioError(field, f"rules must be a non-empty list of {', '.join(KNOWN_RULES)}")
    for name in value:
        if name not in KNOWN_RULES:
            raise ScenarioError(field, f"unknown rule {name!r} (known: {', '.join(KNOWN_RULES)})")
    if len(set(value)) != len(value):
        raise ScenarioError(field, f"rules must not repeat, got {list(value)}")
    return tuple(value)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"decision_rules.{key}", f"{key} must be a number, got {value!r}")
    return float(value)


def _whole(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"decision_rules.{key}", f"{key} must be a whole number, got {value!r}")
    return value
