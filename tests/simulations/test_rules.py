"""Decision-rule studies (simulations/rules.py): configuration, rule mechanics, and seeded
simulation properties of the statistics engine's stopping rules.

The A/A property uses a one-sided binomial bound: if a rule's true false-winner rate were
exactly alpha, the share of the N replicates that declare a winner exceeds
binom.ppf(0.999, N, alpha) / N with probability <= 0.001. mSPRT and the confidence sequence
must stay at or below that bound; the naive peeking test must exceed 2 * alpha (with 20 looks
its rate is about 0.25, and P(Bin(N, 0.25) <= 0.10 N) is below 1e-7 for N = 200).
Everything is seeded, so each run is deterministic; the whole file runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
import pytest
from scipy.stats import binom

from app.stats.sufficient import SampleStats
from simulations.engine import SimulationResult, run, run_replicate
from simulations.environments import ScenarioError
from simulations.rules import RULE_NAMES, RuleTracker, rule_config, summarize_rules, tracker_for
from simulations.scenario import Scenario, load_scenario, scenario_from_dict

ALPHA = 0.05
SCENARIOS = "simulations/scenarios"


def scenario(
    means: list[float],
    *,
    rules: dict[str, Any] | None = None,
    horizon: int = 10_000,
    update_interval: int = 500,
    replicates: int = 200,
    seed: int = 11,
    kind: str = "bernoulli",
) -> Scenario:
    environment: dict[str, Any] = {"kind": kind, "means": means}
    return scenario_from_dict(
        {
            "name": "rules-test",
            "horizon": horizon,
            "update_interval": update_interval,
            "replicates": replicates,
            "seed": seed,
            "environment": environment,
            "policies": [{"name": "fixed", "type": "fixed"}],
            "decision_rules": {} if rules is None else rules,
        }
    )


def row(table: pd.DataFrame, rule: str) -> pd.Series:
    selected = table[table["rule"] == rule]
    assert len(selected) == 1
    return selected.iloc[0]


# --- Configuration ---------------------------------------------------------------------------


def test_defaults() -> None:
    config = rule_config(scenario([0.1, 0.1], horizon=7_000))
    assert config.rules == RULE_NAMES
    assert config.alpha == ALPHA
    assert config.control == 0
    assert config.planned_n == 7_000  # the horizon
    assert config.group_sequential_looks == 5
    assert config.spending == "obrien_fleming"
    assert config.p_best == 0.95
    assert config.min_samples == 100


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"alpha": 1.5}, "decision_rules.alpha"),
        ({"alpha": 0}, "decision_rules.alpha"),
        ({"alpha": True}, "decision_rules.alpha"),
        ({"alpha": "0.05"}, "decision_rules.alpha"),
        ({"rules": ["msprt", "bogus"]}, "decision_rules.rules"),
        ({"rules": []}, "decision_rules.rules"),
        ({"rules": "msprt"}, "decision_rules.rules"),
        ({"rules": ["msprt", "msprt"]}, "decision_rules.rules"),
        ({"control": 2}, "decision_rules.control"),
        ({"control": 0.0}, "decision_rules.control"),
        ({"planned_n": 1}, "decision_rules.planned_n"),
        ({"planned_n": 1e4}, "decision_rules.planned_n"),
        ({"group_sequential_looks": 0}, "decision_rules.group_sequential_looks"),
        ({"spending": "linear"}, "decision_rules.spending"),
        ({"spending": "power"}, "decision_rules.spending"),
        ({"p_best": 0.3}, "decision_rules.p_best"),
        ({"p_best": 1.0}, "decision_rules.p_best"),
        ({"min_samples": -1}, "decision_rules.min_samples"),
        ({"min_sample": 100}, "decision_rules.min_sample"),
    ],
)
def test_invalid_config_names_the_field(rules: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        tracker_for(scenario([0.1, 0.1], rules=rules))
    assert caught.value.field == field
    assert field in str(caught.value)


def test_two_arms_only() -> None:
    with pytest.raises(ScenarioError, match="two arms") as caught:
        tracker_for(scenario([0.1, 0.1, 0.1]))
    assert caught.value.field == "decision_rules"


def test_no_table() -> None:
    plain = dataclasses.replace(scenario([0.1, 0.1]), decision_rules=None)
    with pytest.raises(ScenarioError) as caught:
        tracker_for(plain)
    assert caught.value.field == "decision_rules"


@pytest.mark.parametrize("name", ["decision_rules_aa", "decision_rules_effect"])
def test_shipped_scenarios_validate(name: str) -> None:
    loaded = load_scenario(f"{SCENARIOS}/{name}.toml")
    config = rule_config(loaded)
    assert loaded.horizon == 20_000
    assert loaded.update_interval == 500
    assert loaded.replicates == 200
    assert config.rules == (*RULE_NAMES, "rollout")  # the shipped studies include rollouts
    assert loaded.environment.n_arms == 2


# --- Rule mechanics on hand-made looks -------------------------------------------------------


def binary(n: int, successes: int) -> SampleStats:
    return SampleStats.from_binary(n, successes)


@pytest.mark.parametrize("control", [0, 1])
def test_a_worse_treatment_makes_the_control_win(control: int) -> None:
    tracker = tracker_for(scenario([0.1, 0.1], rules={"control": control, "planned_n": 10_000}))
    strong, weak = binary(5_000, 650), binary(5_000, 500)  # 13% vs 10%: z ~ 4.7
    stats = [strong, weak] if control == 0 else [weak, strong]
    tracker.look(10_000, stats)
    result = tracker.result()
    assert list(result) == list(RULE_NAMES)
    for name in RULE_NAMES:
        assert result[name] == {"winner": control, "stopped_at": 10_000}, name


def test_a_better_treatment_wins_and_the_rule_stays_stopped() -> None:
    tracker = tracker_for(scenario([0.1, 0.1], rules={"planned_n": 10_000}))
    tracker.look(10_000, [binary(5_000, 500), binary(5_000, 650)])
    first = dict(tracker.result())
    assert all(first[name] == {"winner": 1, "stopped_at": 10_000} for name in RULE_NAMES)
    # Later data reverses the effect; a stopped rule does not look again.
    tracker.look(30_000, [binary(15_000, 2_500), binary(15_000, 1_650)])
    assert dict(tracker.result()) == first


def test_too_little_data_does_not_stop() -> None:
    tracker = tracker_for(scenario([0.1, 0.1], rules={"planned_n": 40, "min_samples": 100}))
    tracker.look(1, [binary(1, 0), binary(0, 0)])  # empty arm
    tracker.look(4, [binary(2, 0), binary(2, 0)])  # zero variance
    tracker.look(20, [binary(10, 1), binary(10, 9)])  # overwhelming, but below min_n / min_samples
    result = tracker.result()
    for name in ("msprt", "confidence_sequence", "p_best"):
        assert result[name] == {"winner": None, "stopped_at": None}, name
    # The naive test needs only a variance: it stops on 10 observations per arm.
    assert result["naive_t"] == {"winner": 1, "stopped_at": 20}


def test_group_sequential_analyses_only_at_planned_fractions() -> None:
    # planned_n 1000, 4 looks: analyses at 250, 500, 750, 1000 total observations.
    tracker = tracker_for(
        scenario(
            [0.1, 0.1],
            rules={"planned_n": 1_000, "group_sequential_looks": 4, "rules": ["group_sequential"]},
        )
    )
    # 100 per arm, a huge effect, but only 20% information: no planned look yet.
    tracker.look(200, [binary(100, 5), binary(100, 60)])
    assert tracker.result()["group_sequential"]["stopped_at"] is None
    tracker.look(260, [binary(130, 7), binary(130, 78)])
    assert tracker.result()["group_sequential"] == {"winner": 1, "stopped_at": 260}


def test_gaussian_rewards_use_the_continuous_tests() -> None:
    sc = scenario([0.0, 0.5], kind="gaussian", horizon=2_000, update_interval=200, replicates=1)
    tracker = tracker_for(sc)
    result = run_replicate(sc, sc.policies[0], 0, observers=[tracker]).rules
    for name in RULE_NAMES:
        assert result[name]["winner"] == 1, name
        assert result[name]["stopped_at"] is not None


# --- Simulation properties --------------------------------------------------------------------


@pytest.fixture(scope="module")
def aa() -> SimulationResult:
    """A/A, 0.10 vs 0.10, 20 looks (every 500 of 10,000 rounds), 300 replicates."""
    rules = {"rules": ["msprt", "confidence_sequence", "naive_t", "group_sequential"]}
    return run(scenario([0.1, 0.1], rules=rules, replicates=300, seed=2026), workers=1)


@pytest.fixture(scope="module")
def effect() -> SimulationResult:
    """0.10 vs 0.13 (z ~ 4.7 at the horizon), 20 looks, 100 replicates."""
    rules = {"rules": ["msprt", "confidence_sequence", "group_sequential", "naive_t"]}
    return run(scenario([0.1, 0.13], rules=rules, replicates=100, seed=2027), workers=1)


def test_aa_false_winner_rates(aa: SimulationResult) -> None:
    table = summarize_rules(aa)
    n = aa.scenario.replicates
    bound = binom.ppf(0.999, n, ALPHA) / n
    assert row(table, "naive_t")["false_winner_rate"] > 2 * ALPHA
    for name in ("msprt", "confidence_sequence", "group_sequential"):
        rate = row(table, name)["false_winner_rate"]
        assert rate <= bound, (name, rate, bound)
    for name in table["rule"]:
        # Under A/A every declaration is false, and there is no power to speak of.
        assert row(table, name)["false_winner_rate"] == row(table, name)["declared"]
        assert math.isnan(row(table, name)["power"])


def test_effect_power_and_early_stopping(effect: SimulationResult) -> None:
    table = summarize_rules(effect)
    horizon = effect.scenario.horizon
    for name in ("msprt", "confidence_sequence", "group_sequential"):
        r = row(table, name)
        assert r["power"] > 0.8, (name, r["power"])
        assert r["false_winner_rate"] <= ALPHA, (name, r["false_winner_rate"])
        assert r["mean_stop_rounds"] < 0.8 * horizon, (name, r["mean_stop_rounds"])
        assert r["median_stop_rounds"] <= horizon


def test_group_sequential_stops_only_at_planned_looks(effect: SimulationResult) -> None:
    planned = {2_000, 4_000, 6_000, 8_000, 10_000}  # 5 looks of planned_n = horizon = 10,000
    stops = {r.rules["group_sequential"]["stopped_at"] for r in effect.replicates}
    stops.discard(None)
    assert stops
    assert stops <= planned
    assert len(stops) > 1  # not always the same look


def test_group_sequential_with_looks_between_updates() -> None:
    # 3 looks of 10,000: fractions 1/3, 2/3, 1 are reached at the updates after 3,333 and
    # 6,667 rounds (3,500 and 7,000) and at 10,000.
    rules = {"rules": ["group_sequential"], "group_sequential_looks": 3}
    result = run(scenario([0.1, 0.13], rules=rules, replicates=40, seed=5), workers=1)
    stops = {r.rules["group_sequential"]["stopped_at"] for r in result.replicates}
    stops.discard(None)
    assert stops
    assert stops <= {3_500, 7_000, 10_000}


def test_summary_shape(effect: SimulationResult) -> None:
    table = summarize_rules(effect)
    assert list(table.columns) == [
        "policy",
        "rule",
        "replicates",
        "declared",
        "false_winner_rate",
        "power",
        "mean_stop_rounds",
        "median_stop_rounds",
    ]
    assert list(table["rule"]) == ["msprt", "confidence_sequence", "group_sequential", "naive_t"]
    assert (table["replicates"] == effect.scenario.replicates).all()
    assert (table["power"] + table["false_winner_rate"] <= table["declared"] + 1e-12).all()


def test_tracker_is_an_observer() -> None:
    tracker = tracker_for(scenario([0.1, 0.1]))
    assert isinstance(tracker, RuleTracker)
    assert set(tracker.result()) == set(RULE_NAMES)


# --- the service's automatic rollout as a rule ---------------------------------------------

ROLLOUT = {
    "steps": [0.5, 0.8, 1.0],
    "min_decisions": 1000,
    "min_step_s": 0,
    "min_step_decisions": 1000,
}


def test_the_rollout_rule_is_off_unless_configured_and_validates_its_table() -> None:
    assert "rollout" not in rule_config(scenario([0.1, 0.1])).rules
    config = rule_config(scenario([0.1, 0.1], rules={"rollout": ROLLOUT}))
    assert config.rules[-1] == "rollout"
    assert config.rollout is not None
    assert config.rollout.steps == (0.5, 0.8, 1.0)
    with pytest.raises(ScenarioError) as error:
        rule_config(scenario([0.1, 0.1], rules={"rollout": {"steps": [0.5]}}))
    assert error.value.field == "decision_rules.rollout.steps"


def test_rollouts_rarely_happen_under_a_a_and_complete_three_dwells_after_the_test() -> None:
    rules = {"rules": ["confidence_sequence", "rollout"], "alpha": ALPHA, "rollout": ROLLOUT}
    aa = summarize_rules(run(scenario([0.10, 0.10], rules=rules, horizon=8000), workers=1))
    bound = binom.ppf(0.999, 200, ALPHA) / 200
    assert row(aa, "rollout")["false_winner_rate"] <= bound
    # The rollout starts at the confidence sequence's rejection (once min_decisions are in)
    # and completes after three dwells of 1000 decisions (looks every 500 rounds).
    result = run(scenario([0.10, 0.20], rules=rules, horizon=12_000, replicates=40), workers=1)
    for replicate in result.replicates:
        cs, rollout = replicate.rules["confidence_sequence"], replicate.rules["rollout"]
        assert cs["winner"] == 1
        start = max(cs["stopped_at"], 1000)
        if rollout["winner"] is not None:
            assert rollout["winner"] == 1
            assert rollout["stopped_at"] == start + 3000
        else:  # no time left in the horizon to finish the ramp
            assert start + 3000 > 12_000
    effect = summarize_rules(result)
    assert row(effect, "rollout")["power"] >= 0.9
