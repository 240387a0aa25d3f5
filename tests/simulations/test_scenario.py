"""Scenario files: every shipped one loads; every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulations.environments import ScenarioError
from simulations.scenario import load_scenario, scenario_from_dict

SCENARIOS = sorted((Path(__file__).parents[2] / "simulations" / "scenarios").glob("*.toml"))


def _base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "s",
        "horizon": 100,
        "update_interval": 10,
        "environment": {"kind": "bernoulli", "means": [0.1, 0.2]},
        "policies": [{"type": "thompson"}],
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.policies
    assert scenario.horizon >= scenario.update_interval


def test_policies_are_built_by_the_services_factory_with_its_defaults() -> None:
    scenario = scenario_from_dict(_base(policies=[{"type": "thompson", "name": "ts"}]))
    policy = scenario.policies[0].build(2)
    assert policy.kind == "thompson"
    assert policy.min_probability == 0.01  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"horizon": 0}, "horizon", ">= 1"),
        ({"horizon": 1.5}, "horizon", "whole number"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"policies": []}, "policies", "at least one"),
        ({"policies": [{"type": "thompson"}, {"type": "thompson"}]}, "policies", "unique"),
        ({"policies": [{"type": "bogus"}]}, "policies.bogus.type", "type must be one of"),
        (
            {"policies": [{"type": "thompson", "params": {"min_probability": 0.9}}]},
            "policies.thompson.params.min_probability",
            "<= 1",
        ),
        (
            {"policies": [{"type": "epsilon_greedy", "params": {"epsilon": 0}}]},
            "policies.epsilon_greedy.params.epsilon",
            "(0, 1]",
        ),
        ({"policies": [{"type": "greedy", "params": {"x": 1}}]}, "policies.greedy.params", "no"),
        (
            {"policies": [{"type": "thompson", "per_segment": True}]},
            "policies.thompson.per_segment",
            "contextual",
        ),
        ({"environment": {"kind": "poisson"}}, "environment.kind", "must be one of"),
        ({"environment": {"kind": "bernoulli"}}, "environment.means", "needs means"),
        ({"environment": {"kind": "bernoulli", "means": [2]}}, "environment.means", "[0, 1]"),
        (
            {"environment": {"kind": "bernoulli", "means": [0.1], "sd": 1}},
            "environment.sd",
            "unknown",
        ),
        ({"feedback": {"reward_window_s": -1}}, "feedback.reward_window_s", ">= 0"),
        ({"feedback": {"delay": "poisson"}}, "feedback.delay", "must be"),
        ({"feedback": {"typo": 1}}, "feedback.typo", "unknown key"),
        ({"winner": {"p_best": 1.0}}, "winner.p_best", "[0.5, 1)"),
        ({"uniforms": "quasi"}, "uniforms", "'rng' or 'hash'"),
        ({"estimate_arms": "yes"}, "estimate_arms", "true or false"),
        # What the learner would refuse at its first update is refused when the file loads.
        (
            {"environment": {"kind": "gaussian", "means": [1.0, 2.0]}},
            "policies.thompson.params.reward",
            "set reward = 'gaussian'",
        ),
        (
            {"feedback": {"default_reward": 2.0}},
            "policies.thompson.params.reward",
            "default_reward is 2",
        ),
        ({"policies": [{"type": "fixed", "weights": ["a", 1]}]}, "policies.0.weights", "numbers"),
        (
            {"environment": {"kind": "gaussian", "means": [1.0], "sd": "a"}},
            "environment.sd",
            "> 0",
        ),
        ({"feedback": {"delay": "uniform"}}, "feedback.delay_s", "delay_s > 0"),
        # Decision rules are checked when the file loads, not later inside a worker process.
        ({"decision_rules": {"alpha": 2}}, "decision_rules.alpha", "alpha"),
        (
            {
                "decision_rules": {},
                "environment": {"kind": "bernoulli", "means": [0.1, 0.2, 0.3]},
            },
            "decision_rules",
            "two",
        ),
    ],
)
def test_bad_scenarios_name_the_key_and_the_rule(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ScenarioError) as error:
        scenario_from_dict(_base(**changes))
    assert error.value.field == field
    assert rule in error.value.message


def test_a_file_that_is_not_toml_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(latin)
