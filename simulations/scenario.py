"""Scenarios: a TOML file naming the environment, the policies, the batching and the seed.

```toml
name = "bernoulli-standard"
horizon = 100_000          # rounds (decisions) per replicate
update_interval = 1_000    # the learner publishes a new policy version every this many rounds
replicates = 20
seed = 2026

[environment]              # kind: bernoulli | gaussian | contextual | drift
kind = "bernoulli"
means = [0.10, 0.11, 0.12]

[[policies]]               # any policy the service serves, with the service's own parameters
name = "thompson"
type = "thompson"
params = { min_probability = 0.01 }
```

Optional tables: `[feedback]` (delayed rewards, reward window and default reward, exactly as the
service's learner applies them), `[winner]` (the automatic-winner criterion, tracked every update)
and `[decision_rules]` (sequential tests run inside the simulation). docs/simulations.md lists
every key. Every mistake raises ScenarioError naming the key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from app.bandits import EpsilonGreedyPolicy, Policy, PolicyConfigError, build_policy
from simulations.environments import (
    DriftingArms,
    Environment,
    ScenarioError,
    SegmentedArms,
    StationaryArms,
)

ENVIRONMENT_KINDS = ("bernoulli", "gaussian", "contextual", "drift")
GREEDY = "greedy"
"""A study-only policy type: epsilon-greedy with epsilon 0, which the service never serves."""
Uniforms = Literal["rng", "hash"]


@dataclass(frozen=True)
class PolicySpec:
    """One policy of a scenario: the service's policy type and parameters, and a display name.

    `per_segment` runs one copy of the policy per context segment (a tabular contextual
    bandit): each segment learns from its own decisions only.
    """

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    weights: tuple[float, ...] | None = None
    per_segment: bool = False

    def build(self, n_arms: int) -> Policy:
        """The policy object, built by the service's own factory (greedy excepted)."""
        try:
            if self.kind == GREEDY:
                if self.params:
                    raise PolicyConfigError("params", "policy type 'greedy' takes no params")
                return EpsilonGreedyPolicy(n_arms=n_arms, epsilon=0.0, allow_greedy=True)
            weights = list(self.weights) if self.weights is not None else None
            return build_policy(self.kind, self.params, n_arms=n_arms, weights=weights)
        except PolicyConfigError as exc:
            where = "type" if exc.field == "type" else exc.field
            prefix = "" if where in ("type", "weights", "params") else "params."
            raise ScenarioError(f"policies.{self.name}.{prefix}{where}", exc.message) from None


@dataclass(frozen=True)
class Feedback:
    """When rewards reach the learner, as in the service.

    Decisions arrive at `decisions_per_second`; decision i is made at time i / rate. Its
    outcome arrives `delay` seconds later. The learner, at time T, counts the decisions whose
    reward window closed, decided_at <= T - reward_window_s - learner_lag_s: each with its
    outcome if that arrived within the window, else `default_reward` (a late outcome is kept
    by the service but not learned from). Without a [feedback] table, every reward is known
    immediately and each update learns from every decision made before it.
    """

    decisions_per_second: float = 1.0
    reward_window_s: float = 0.0
    default_reward: float = 0.0
    delay: Literal["none", "fixed", "exponential", "uniform"] = "none"
    delay_s: float = 0.0
    """fixed: the delay; exponential: its mean; uniform: the upper end (from 0)."""
    learner_lag_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decisions_per_second) and self.decisions_per_second > 0):
            raise ScenarioError(
                "feedback.decisions_per_second", "decisions_per_second must be a number > 0"
            )
        for name in ("reward_window_s", "delay_s", "learner_lag_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ScenarioError(f"feedback.{name}", f"{name} must be a number >= 0")
        if not math.isfinite(self.default_reward):
            raise ScenarioError("feedback.default_reward", "default_reward must be finite")
        if self.delay == "uniform" and self.delay_s == 0:
            raise ScenarioError("feedback.delay_s", "a uniform delay needs delay_s > 0")
        if self.delay not in ("none", "fixed", "exponential", "uniform"):
            raise ScenarioError(
                "feedback.delay",
                f"delay must be 'none', 'fixed', 'exponential' or 'uniform', got {self.delay!r}",
            )

    def on_time_probability(self) -> float:
        """P(delay <= reward window): the share of outcomes the learner gets."""
        window, d = self.reward_window_s, self.delay_s
        if self.delay == "none":
            return 1.0
        if self.delay == "fixed":
            return 1.0 if d <= window else 0.0
        if self.delay == "uniform":
            return min(1.0, window / d)
        return 1.0 if d == 0 else -math.expm1(-window / d)


@dataclass(frozen=True)
class WinnerRule:
    """The automatic-winner criterion: an arm is declared the winner at the first update where
    its posterior P(best) >= `p_best` and its expected loss <= `max_expected_loss`, with every arm
    having at least `min_samples` learned decisions; the criterion must hold at
    `hold_updates` consecutive updates."""

    p_best: float = 0.95
    max_expected_loss: float = math.inf
    min_samples: int = 100
    hold_updates: int = 1

    def __post_init__(self) -> None:
        if not 0.5 <= self.p_best < 1.0:
            raise ScenarioError("winner.p_best", "p_best must be in [0.5, 1)")
        if not self.max_expected_loss > 0:
            raise ScenarioError("winner.max_expected_loss", "max_expected_loss must be > 0")
        if self.min_samples < 0:
            raise ScenarioError("winner.min_samples", "min_samples must be >= 0")
        if self.hold_updates < 1:
            raise ScenarioError("winner.hold_updates", "hold_updates must be >= 1")


@dataclass(frozen=True)
class Scenario:
    name: str
    environment: Environment
    policies: tuple[PolicySpec, ...]
    horizon: int
    update_interval: int
    replicates: int = 10
    seed: int = 0
    salt: str = "simulation"
    uniforms: Uniforms = "rng"
    """"rng": a seeded numpy stream picks arms; "hash": the service's own per-decision hash of
    (salt, decision_id), slower, but every decision is the one the service would make."""
    feedback: Feedback | None = None
    winner: WinnerRule | None = None
    decision_rules: Mapping[str, Any] | None = None
    estimate_arms: bool = False
    """Estimate every arm's value from each replicate's own logs, naively and by IPS (the
    feedback-loop study); see simulations.studies."""
    description: str = ""
    source: Path | None = None

    def __post_init__(self) -> None:
        for name in ("horizon", "update_interval", "replicates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScenarioError(name, f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ScenarioError("seed", f"seed must be a whole number >= 0, got {self.seed!r}")
        if not self.policies:
            raise ScenarioError("policies", "a scenario needs at least one [[policies]] entry")
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ScenarioError("policies", f"policy names must be unique, got {names}")
        if self.uniforms not in ("rng", "hash"):
            raise ScenarioError("uniforms", "uniforms must be 'rng' or 'hash'")
        if not self.salt or "\x1f" in self.salt:
            raise ScenarioError("salt", "salt must be a non-empty string without U+001F")
        for spec in self.policies:
            spec.build(self.environment.n_arms)  # validate now, not in a worker
            self._check_reward_model(spec)
            if spec.per_segment and self.environment.n_segments == 1:
                raise ScenarioError(
                    f"policies.{spec.name}.per_segment",
                    "per_segment needs a contextual environment (one with segments)",
                )

        if self.decision_rules is not None:
            from simulations.rules import rule_config  # it needs a built Scenario

            rule_config(self)  # checked when the file loads, not inside a worker

    def _check_reward_model(self, spec: PolicySpec) -> None:
        """Refuse now what the learner would refuse at its first update: Bernoulli Thompson
        sampling needs every learned reward in [0, 1]."""
        if spec.kind != "thompson" or spec.params.get("reward", "bernoulli") != "bernoulli":
            return
        field = f"policies.{spec.name}.params.reward"
        if self.environment.reward != "bernoulli":
            raise ScenarioError(
                field,
                "reward 'bernoulli' needs rewards in [0, 1], but the environment's are "
                "gaussian: set reward = 'gaussian'",
            )
        if self.feedback is not None and not 0.0 <= self.feedback.default_reward <= 1.0:
            raise ScenarioError(
                field,
                "reward 'bernoulli' needs rewards in [0, 1], but feedback.default_reward is "
                f"{self.feedback.default_reward:g}: set reward = 'gaussian'",
            )

    def with_replicates(self, replicates: int | None) -> Scenario:
        return self if replicates is None else replace(self, replicates=replicates)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError("file", f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError("file", f"{source} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("file", f"{source} is not valid TOML: {exc}") from None
    return scenario_from_dict(data, source=source)


_TOP_KEYS = {
    "name",
    "description",
    "horizon",
    "update_interval",
    "replicates",
    "seed",
    "salt",
    "uniforms",
    "environment",
    "policies",
    "feedback",
    "winner",
    "decision_rules",
    "estimate_arms",
}


def scenario_from_dict(data: Mapping[str, Any], *, source: Path | None = None) -> Scenario:
    """A Scenario from parsed TOML (or any mapping of the same shape)."""
    _known("", data, _TOP_KEYS)
    for required in ("name", "horizon", "update_interval", "environment", "policies"):
        if required not in data:
            raise ScenarioError(required, f"the scenario must set {required}")
    policies = data["policies"]
    if not isinstance(policies, list):
        raise ScenarioError("policies", "policies must be an array of tables ([[policies]])")
    return Scenario(
        name=_text("name", data["name"]),
        description=str(data.get("description", "")),
        environment=environment_from_dict(_table("environment", data["environment"])),
        policies=tuple(_policy(i, _table(f"policies.{i}", p)) for i, p in enumerate(policies)),
        horizon=data["horizon"],
        update_interval=data["update_interval"],
        replicates=data.get("replicates", 10),
        seed=data.get("seed", 0),
        salt=_text("salt", data.get("salt", "simulation")),
        uniforms=data.get("uniforms", "rng"),
        feedback=_dataclass("feedback", Feedback, data.get("feedback")),
        winner=_dataclass("winner", WinnerRule, data.get("winner")),
        decision_rules=_table("decision_rules", data["decision_rules"])
        if "decision_rules" in data
        else None,
        estimate_arms=_flag("estimate_arms", data.get("estimate_arms", False)),
        source=source,
    )


_ENV_KEYS: Mapping[str, set[str]] = {
    "bernoulli": {"means"},
    "gaussian": {"means", "sd"},
    "contextual": {"segment_means", "segment_weights", "reward", "sd"},
    "drift": {"start_means", "end_means", "change_at", "drift", "duration", "reward", "sd"},
}


def environment_from_dict(data: Mapping[str, Any]) -> Environment:
    kind = data.get("kind")
    if kind not in ENVIRONMENT_KINDS:
        raise ScenarioError(
            "environment.kind",
            f"kind must be one of {', '.join(ENVIRONMENT_KINDS)}, got {kind!r}",
        )
    _known("environment.", data, _ENV_KEYS[kind] | {"kind"})
    try:
        if kind in ("bernoulli", "gaussian"):
            _require("", data, "means")
            return StationaryArms(data["means"], reward=kind, sd=data.get("sd", 1.0))
        common = {"reward": data.get("reward", "bernoulli"), "sd": data.get("sd", 1.0)}
        if kind == "contextual":
            _require("", data, "segment_means")
            return SegmentedArms(data["segment_means"], data.get("segment_weights"), **common)
        for key in ("start_means", "end_means", "change_at"):
            _require("", data, key)
        return DriftingArms(
            data["start_means"],
            data["end_means"],
            change_at=data["change_at"],
            mode=data.get("drift", "abrupt"),
            duration=data.get("duration", 0),
            **common,
        )
    except ScenarioError as exc:
        raise ScenarioError(f"environment.{exc.field}", exc.message) from None


def _policy(index: int, data: Mapping[str, Any]) -> PolicySpec:
    _known(f"policies.{index}.", data, {"name", "type", "params", "weights", "per_segment"})
    _require(f"policies.{index}", data, "type")
    kind = _text(f"policies.{index}.type", data["type"])
    params = _table(f"policies.{index}.params", data.get("params", {}))
    weights = data.get("weights")
    per_segment = _flag(f"policies.{index}.per_segment", data.get("per_segment", False))
    return PolicySpec(
        name=_text(f"policies.{index}.name", data.get("name", kind)),
        kind=kind,
        params=dict(params),
        weights=_weights(f"policies.{index}.weights", weights),
        per_segment=per_segment,
    )


def _weights(name: str, value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(w, int | float) and not isinstance(w, bool) for w in value
    ):
        raise ScenarioError(name, "weights must be a list of numbers")
    return tuple(float(w) for w in value)


def _dataclass(name: str, cls: type[Any], data: Any) -> Any:
    if data is None:
        return None
    table = _table(name, data)
    allowed = set(cls.__dataclass_fields__)
    _known(f"{name}.", table, allowed)
    try:
        return cls(**table)
    except TypeError as exc:
        raise ScenarioError(name, f"invalid [{name}] table: {exc}") from None


def _known(prefix: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ScenarioError(
                f"{prefix}{key}",
                f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
            )


def _require(prefix: str, data: Mapping[str, Any], key: str) -> None:
    if key not in data:
        where = f"{prefix}.{key}" if prefix else key
        raise ScenarioError(where, f"{prefix or 'environment'} needs {key}")


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(name, f"{name} must be true or false")
    return value


def _table(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(name, f"{name} must be a table")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ScenarioError(name, f"{name} must be a non-empty string")
    return value
