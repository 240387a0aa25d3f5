"""Automatic winner rollout: the pure state machine the controller and the simulations share.

Once an experiment has a proven winner, traffic moves to it in steps (say 50%, 80%, 100%),
each held for a minimum time and number of decisions, with guardrails checked at every
controller pass: harm (an always-valid test, Holm-corrected across guardrails) or a sample
ratio mismatch counts a failure, and `failure_limit` failures roll the rollout back to the
pre-rollout allocation. Optionally a person approves each step, and a holdback share keeps
measuring the other arms after the last step.

The winner comes from the caller as `Evidence.winner`: the service takes it from the report
(A/B: the always-valid test rejects in the favourable direction and the lift's bound clears
the minimum effect; bandits: P(best) and expected loss, see `bandit_winner`), the simulations
from the same statistics computed on simulated logs. This module only decides what happens
next: `step` is a pure function of the policy, the state, the evidence and the clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.bandits.base import PolicyConfigError
from app.bandits.validation import finite_number

Phase = Literal["watching", "ramping", "awaiting_approval", "holding", "completed", "rolled_back"]
Action = Literal[
    "none", "start", "advance", "await_approval", "complete", "hold", "failure", "rollback"
]


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How an experiment rolls its winner out (every field validated; see docs/rollouts.md).

    steps: increasing winner shares, the last one 1.0 (e.g. (0.5, 0.8, 1.0)).
    min_decisions: closed decisions the experiment needs before a winner may be declared.
    min_step_s, min_step_decisions: dwell of each step (both must pass).
    holdback: share kept on the other arms after the last step (keeps measuring), in [0, 0.5].
    failure_limit: failed guardrail / SRM checks that trigger the rollback (>= 1).
    approval: a person approves each step after the first (POST .../rollout/approve).
    p_best, expected_loss: bandit winner rule: P(best) >= p_best and expected loss <= bound.
    hold_s: the winner must stay the winner this long before the rollout starts.
    """

    steps: tuple[float, ...] = (0.5, 0.8, 1.0)
    min_decisions: int = 1000
    min_step_s: float = 3600.0
    min_step_decisions: int = 1000
    holdback: float = 0.0
    failure_limit: int = 1
    approval: bool = False
    p_best: float = 0.95
    expected_loss: float = 0.001
    hold_s: float = 0.0

    def __post_init__(self) -> None:
        steps = tuple(finite_number("steps", s) for s in self.steps)
        if not steps or any(not 0.0 < s <= 1.0 for s in steps):
            raise PolicyConfigError("steps", f"steps are winner shares in (0, 1], got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)) or steps[-1] != 1.0:
            raise PolicyConfigError(
                "steps", f"steps must increase and end at 1.0 (all traffic), got {list(steps)}"
            )
        object.__setattr__(self, "steps", steps)
        for name in ("min_decisions", "min_step_decisions", "failure_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyConfigError(name, f"{name} must be a whole number >= 0, got {value!r}")
        if self.failure_limit < 1:
            raise PolicyConfigError("failure_limit", "failure_limit must be at least 1")
        for name in ("min_step_s", "hold_s"):
            if finite_number(name, getattr(self, name)) < 0:
                raise PolicyConfigError(name, f"{name} must be >= 0")
        if not 0.0 <= finite_number("holdback", self.holdback) <= 0.5:
            raise PolicyConfigError(
                "holdback", f"holdback must be in [0, 0.5], got {self.holdback}"
            )
        if not 0.5 <= finite_number("p_best", self.p_best) < 1.0:
            raise PolicyConfigError("p_best", f"p_best must be in [0.5, 1), got {self.p_best}")
        if finite_number("expected_loss", self.expected_loss) < 0:
            raise PolicyConfigError("expected_loss", "expected_loss must be >= 0")
        if not isinstance(self.approval, bool):
            raise PolicyConfigError(
                "approval", f"approval must be true or false, got {self.approval!r}"
            )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutPolicy:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known - {"enabled"})
        if unknown:
            raise PolicyConfigError(unknown[0], f"{unknown[0]} is not a rollout setting")
        values = {k: v for k, v in data.items() if k in known}
        if "steps" in values:
            steps = values["steps"]
            if not isinstance(steps, list | tuple):
                raise PolicyConfigError("steps", f"steps must be a list, got {steps!r}")
            values["steps"] = tuple(steps)
        return cls(**values)

    def share(self, step: int) -> float:
        """The winner's share at `step` (capped by the holdback)."""
        return min(self.steps[step], 1.0 - self.holdback)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the statistics say at one controller pass."""

    closed: int  # closed decisions counted on the primary metric
    decisions: int  # experimental decisions logged so far (the step dwell counts these)
    winner: str | None  # the winner rule's arm, if it holds now
    harm: tuple[str, ...] = ()  # guardrails harmed (each "metric: arm"), Holm across guardrails
    srm: bool = False  # sample ratio mismatch against the logged allocation
    numbers: Mapping[str, Any] = field(default_factory=dict)  # for the revision log


@dataclass(frozen=True, slots=True)
class RolloutState:
    phase: Phase = "watching"
    winner: str | None = None
    step: int = 0
    step_started_at: float = 0.0  # seconds (any clock, as long as `now` uses the same)
    step_decisions: int = 0
    failures: int = 0
    approved_step: int | None = None
    candidate: str | None = None  # the current winner candidate and since when it held
    candidate_since: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    state: RolloutState
    reason: str


def step(policy: RolloutPolicy, state: RolloutState, evidence: Evidence, *, now: float) -> Decision:
    """The next state after one controller pass (see the module docstring)."""
    if state.phase in ("completed", "rolled_back"):
        return Decision("none", state, f"the rollout is {state.phase}")
    if state.phase == "watching":
        return _watch(policy, state, evidence, now)
    problems = [*(f"guardrail harmed: {h}" for h in evidence.harm)]
    if evidence.srm:
        problems.append("sample ratio mismatch")
    if problems:
        failures = state.failures + 1
        reason = "; ".join(problems) + f" (failure {failures} of {policy.failure_limit})"
        if failures >= policy.failure_limit:
            return Decision(
                "rollback", replace(state, phase="rolled_back", failures=failures), reason
            )
        return Decision("failure", replace(state, failures=failures), reason)
    if state.phase == "holding":
        return Decision("none", state, "holding back; guardrails fine")
    dwell_s = now - state.step_started_at
    dwell_n = evidence.decisions - state.step_decisions
    if dwell_s < policy.min_step_s or dwell_n < policy.min_step_decisions:
        return Decision(
            "none",
            state,
            f"step {state.step + 1} dwelling: {dwell_s:.0f} of {policy.min_step_s:g} s, "
            f"{dwell_n} of {policy.min_step_decisions} decisions",
        )
    last = len(policy.steps) - 1
    if state.step >= last:
        if policy.holdback > 0:
            return Decision(
                "hold",
                replace(state, phase="holding"),
                f"last step held; {policy.holdback:g} stays on the other arms to keep measuring",
            )
        return Decision("complete", replace(state, phase="completed"), "every step passed")
    nxt = state.step + 1
    if policy.approval and state.approved_step != nxt:
        if state.phase == "awaiting_approval":
            return Decision("none", state, f"waiting for approval of step {nxt + 1}")
        return Decision(
            "await_approval",
            replace(state, phase="awaiting_approval"),
            f"step {state.step + 1} passed; step {nxt + 1} needs approval",
        )
    return Decision(
        "advance",
        replace(
            state,
            phase="ramping",
            step=nxt,
            step_started_at=now,
            step_decisions=evidence.decisions,
        ),
        f"step {state.step + 1} passed its dwell with no guardrail harm; "
        f"{policy.share(nxt):.0%} to {state.winner}",
    )


def _watch(policy: RolloutPolicy, state: RolloutState, evidence: Evidence, now: float) -> Decision:
    if evidence.srm or evidence.harm:
        why = "sample ratio mismatch" if evidence.srm else f"guardrail harmed: {evidence.harm[0]}"
        return Decision("none", replace(state, candidate=None, candidate_since=None), why)
    if evidence.closed < policy.min_decisions:
        return Decision(
            "none", state, f"{evidence.closed} of {policy.min_decisions} closed decisions"
        )
    if evidence.winner is None:
        return Decision(
            "none", replace(state, candidate=None, candidate_since=None), "no winner yet"
        )
    since = state.candidate_since if state.candidate == evidence.winner else None
    since = now if since is None else since
    if now - since < policy.hold_s:
        return Decision(
            "none",
            replace(state, candidate=evidence.winner, candidate_since=since),
            f"{evidence.winner} leads; held {now - since:.0f} of {policy.hold_s:g} s",
        )
    started = RolloutState(
        phase="ramping",
        winner=evidence.winner,
        step=0,
        step_started_at=now,
        step_decisions=evidence.decisions,
        candidate=evidence.winner,
        candidate_since=since,
    )
    return Decision(
        "start", started, f"{evidence.winner} is the winner; {policy.share(0):.0%} to it"
    )


def allocation(
    policy: RolloutPolicy, state: RolloutState, arms: Sequence[str]
) -> tuple[float, ...]:
    """The served split at the state's step: the winner's share, the rest equally on the others."""
    if state.winner not in arms:
        raise ValueError(f"the winner {state.winner!r} is not one of the arms {list(arms)}")
    share = policy.share(state.step)
    others = len(arms) - 1
    rest = (1.0 - share) / others if others else 0.0
    vector = [share if a == state.winner else rest for a in arms]
    total = math.fsum(vector)
    return tuple(v / total for v in vector)


def bandit_winner(
    arms: Sequence[str],
    p_best: Sequence[float],
    expected_loss: Sequence[float],
    policy: RolloutPolicy,
) -> str | None:
    """The arm whose P(best) reaches the threshold with expected loss within the bound."""
    for arm, p, loss in zip(arms, p_best, expected_loss, strict=True):
        if p >= policy.p_best and loss <= policy.expected_loss:
            return arm
    return None
