"""The rollout state machine (app.bandits.rollout): validation, every transition, the split."""

from __future__ import annotations

from typing import Any

import pytest

from app.bandits import PolicyConfigError
from app.bandits.rollout import (
    Evidence,
    RolloutPolicy,
    RolloutState,
    allocation,
    bandit_winner,
    step,
)

POLICY = RolloutPolicy(
    steps=(0.5, 0.8, 1.0), min_decisions=100, min_step_s=60, min_step_decisions=50
)


def evidence(decisions: int = 1000, winner: str | None = "b", **extra: Any) -> Evidence:
    return Evidence(closed=decisions, decisions=decisions, winner=winner, **extra)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"steps": ()}, "steps"),
        ({"steps": (0.5, 0.5, 1.0)}, "steps"),
        ({"steps": (0.5, 0.9)}, "steps"),
        ({"steps": (0.0, 1.0)}, "steps"),
        ({"failure_limit": 0}, "failure_limit"),
        ({"min_decisions": -1}, "min_decisions"),
        ({"holdback": 0.6}, "holdback"),
        ({"p_best": 1.0}, "p_best"),
        ({"expected_loss": -0.1}, "expected_loss"),
        ({"min_step_s": float("nan")}, "min_step_s"),
        ({"approval": "yes"}, "approval"),
    ],
)
def test_invalid_policies_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyConfigError) as error:
        RolloutPolicy(**settings)
    assert error.value.field == field


def test_from_json_refuses_unknown_settings_and_ignores_enabled() -> None:
    assert RolloutPolicy.from_json({"enabled": True, "steps": [0.3, 1.0]}).steps == (0.3, 1.0)
    with pytest.raises(PolicyConfigError) as error:
        RolloutPolicy.from_json({"stepz": [1.0]})
    assert error.value.field == "stepz"


def test_no_start_before_enough_data_or_without_a_winner_or_with_harm() -> None:
    watching = RolloutState()
    assert step(POLICY, watching, evidence(decisions=99), now=0).action == "none"
    assert step(POLICY, watching, evidence(winner=None), now=0).action == "none"
    assert step(POLICY, watching, evidence(harm=("latency: b",)), now=0).action == "none"
    assert step(POLICY, watching, evidence(srm=True), now=0).action == "none"
    started = step(POLICY, watching, evidence(), now=10)
    assert started.action == "start"
    assert started.state.phase == "ramping"
    assert (started.state.winner, started.state.step, started.state.step_started_at) == ("b", 0, 10)


def test_the_winner_must_hold_for_hold_s() -> None:
    policy = RolloutPolicy(min_decisions=0, hold_s=100)
    first = step(policy, RolloutState(), evidence(), now=0)
    assert first.action == "none"
    assert step(policy, first.state, evidence(), now=99).action == "none"
    # A different leader restarts the clock; losing the lead clears it.
    switched = step(policy, first.state, evidence(winner="c"), now=50)
    assert step(policy, switched.state, evidence(winner="c"), now=120).action == "none"
    assert step(policy, switched.state, evidence(winner="c"), now=150).action == "start"
    lost = step(policy, first.state, evidence(winner=None), now=60)
    assert lost.state.candidate is None


def ramping(step_index: int = 0, **extra: Any) -> RolloutState:
    return RolloutState(
        phase="ramping", winner="b", step=step_index, step_started_at=0, step_decisions=0, **extra
    )


def test_each_step_dwells_for_time_and_decisions_then_advances_then_completes() -> None:
    assert step(POLICY, ramping(), evidence(decisions=49), now=1000).action == "none"
    assert step(POLICY, ramping(), evidence(decisions=5000), now=59).action == "none"
    advanced = step(POLICY, ramping(), evidence(decisions=50), now=60)
    assert advanced.action == "advance"
    assert (advanced.state.step, advanced.state.step_started_at) == (1, 60)
    assert advanced.state.step_decisions == 50
    last = step(POLICY, ramping(2), evidence(decisions=50), now=60)
    assert last.action == "complete"
    assert last.state.phase == "completed"
    assert step(POLICY, last.state, evidence(), now=1e9).action == "none"


def test_harm_or_srm_counts_failures_and_rolls_back_at_the_limit() -> None:
    policy = RolloutPolicy(min_decisions=0, min_step_s=0, min_step_decisions=0, failure_limit=2)
    first = step(policy, ramping(), evidence(harm=("latency_ms: b",)), now=1)
    assert first.action == "failure"
    assert first.state.failures == 1
    assert "latency_ms: b" in first.reason
    second = step(policy, first.state, evidence(srm=True), now=2)
    assert second.action == "rollback"
    assert second.state.phase == "rolled_back"
    assert "sample ratio mismatch" in second.reason
    # A failed check never advances a step.
    assert step(policy, ramping(), evidence(harm=("x: b",)), now=1).state.step == 0


def test_approval_gates_every_step_after_the_first() -> None:
    policy = RolloutPolicy(min_decisions=0, min_step_s=0, min_step_decisions=0, approval=True)
    waiting = step(policy, ramping(), evidence(), now=1)
    assert waiting.action == "await_approval"
    assert step(policy, waiting.state, evidence(), now=2).action == "none"
    approved = RolloutState(**{**_fields(waiting.state), "approved_step": 1})
    assert step(policy, approved, evidence(), now=3).action == "advance"


def _fields(state: RolloutState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in RolloutState.__dataclass_fields__}


def test_holdback_caps_the_share_and_holds_instead_of_completing() -> None:
    policy = RolloutPolicy(min_decisions=0, min_step_s=0, min_step_decisions=0, holdback=0.1)
    assert allocation(policy, ramping(2), ["a", "b", "c"]) == pytest.approx((0.05, 0.9, 0.05))
    held = step(policy, ramping(2), evidence(), now=1)
    assert held.action == "hold"
    assert step(policy, held.state, evidence(), now=2).action == "none"
    assert step(policy, held.state, evidence(harm=("x: b",)), now=3).action == "rollback"


def test_allocation_gives_the_winner_its_share_and_splits_the_rest() -> None:
    assert allocation(POLICY, ramping(0), ["a", "b"]) == (0.5, 0.5)
    assert allocation(POLICY, ramping(1), ["a", "b", "c"]) == pytest.approx((0.1, 0.8, 0.1))
    assert allocation(POLICY, ramping(2), ["b"]) == (1.0,)
    assert sum(allocation(POLICY, ramping(1), list("abcdefg"))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="winner"):
        allocation(POLICY, ramping(0), ["a", "c"])


def test_bandit_winner_needs_both_p_best_and_expected_loss() -> None:
    policy = RolloutPolicy(p_best=0.95, expected_loss=0.01)
    arms = ["a", "b"]
    assert bandit_winner(arms, [0.02, 0.98], [0.05, 0.001], policy) == "b"
    assert bandit_winner(arms, [0.02, 0.98], [0.05, 0.02], policy) is None
    assert bandit_winner(arms, [0.1, 0.9], [0.05, 0.001], policy) is None
