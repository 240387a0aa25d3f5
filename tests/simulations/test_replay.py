"""simulations.replay: off-policy evaluation recovers known policy values from synthetic logs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from simulations.engine import run_replicate
from simulations.environments import ScenarioError
from simulations.replay import (
    Candidate,
    always,
    candidate_from_policy,
    evaluate,
    log_from_frame,
    standard_candidates,
    uniform,
)
from simulations.scenario import PolicySpec, Scenario, scenario_from_dict

SEGMENT_MEANS = [[0.6, 0.4, 0.3], [0.3, 0.4, 0.7]]
SEGMENT_WEIGHTS = [0.6, 0.4]
TRUTH = np.array(SEGMENT_WEIGHTS) @ np.array(SEGMENT_MEANS)
"""V(always a): arm a's mean reward averaged over the contexts (0.48, 0.40, 0.46)."""
REPLICATES = 200
ESTIMATORS = ("ips", "snips", "dr")
LEVEL = 0.95
ALARM = 1e-4
COVERED_AT_LEAST = int(binom.ppf(ALARM, REPLICATES, LEVEL))
"""177 of 200: if an interval really covers 95% of the time, fewer than 177 covering intervals
out of 200 independent logs has probability < 1e-4 (binomial lower quantile), so across the
24 (logging policy, candidate, estimator) cells a false alarm has probability < 0.25%."""


def _scenario() -> Scenario:
    return scenario_from_dict(
        {
            "name": "ope-truth",
            "horizon": 1_000,
            "update_interval": 100,
            "replicates": 1,
            "seed": 7,
            "environment": {
                "kind": "contextual",
                "segment_means": SEGMENT_MEANS,
                "segment_weights": SEGMENT_WEIGHTS,
            },
            "policies": [
                {"name": "uniform", "type": "fixed"},
                {"name": "thompson", "type": "thompson", "params": {"min_probability": 0.1}},
            ],
        }
    )


@pytest.fixture(scope="module")
def estimates() -> pd.DataFrame:
    """Every estimator's answer for uniform and each always-arm candidate on 200 logs of each
    logging policy (uniform split; Thompson with a 0.1 floor, which adapts during the log)."""
    scenario = _scenario()
    truth = {"uniform": float(TRUTH.mean())} | {
        f"always arm {a}": float(TRUTH[a]) for a in range(3)
    }
    frames = []
    for spec in scenario.policies:
        for replicate in range(REPLICATES):
            result = run_replicate(scenario, spec, replicate, keep_log=True)
            assert result.log is not None
            log = log_from_frame(result.log.frame())
            table = evaluate(log, [uniform(log), *(always(log, a) for a in range(3))])
            frames.append(table.assign(logging=spec.name, replicate=replicate))
    frame = pd.concat(frames, ignore_index=True)
    frame["truth"] = frame["candidate"].map(truth)
    frame["covered"] = (frame["ci_low"] <= frame["truth"]) & (frame["truth"] <= frame["ci_high"])
    frame["error"] = frame["estimate"] - frame["truth"]
    return frame


def _cells(estimates: pd.DataFrame) -> Any:
    return estimates.groupby(["logging", "candidate", "estimator"])


def test_every_log_gives_every_estimator_a_number(estimates: pd.DataFrame) -> None:
    assert len(estimates) == 2 * REPLICATES * 4 * len(ESTIMATORS)
    assert (estimates["note"] == "").all()
    assert np.isfinite(estimates[["estimate", "std_error", "ci_low", "ci_high"]]).all().all()


def test_intervals_cover_the_known_value_at_the_nominal_rate(estimates: pd.DataFrame) -> None:
    covered = _cells(estimates)["covered"].sum()
    assert len(covered) == 2 * 4 * len(ESTIMATORS)
    assert (covered >= COVERED_AT_LEAST).all(), covered[covered < COVERED_AT_LEAST]
    # ... and not by being too wide: 200 of 200 in a cell has probability 0.95^200 < 4e-5.
    assert (covered < REPLICATES).all(), covered[covered == REPLICATES]


def test_standard_errors_match_the_spread_of_the_estimates(estimates: pd.DataFrame) -> None:
    # The reported standard error, averaged over logs, against the estimates' actual standard
    # deviation across logs; the latter's relative error with 200 logs is ~5%: 3 SE is 15%.
    cells = _cells(estimates)
    ratio = cells["std_error"].mean() / cells["estimate"].std(ddof=1)
    assert ratio.between(0.85, 1.15).all(), ratio


def test_estimates_are_unbiased_within_monte_carlo_error(estimates: pd.DataFrame) -> None:
    cells = _cells(estimates)["error"]
    z = cells.mean() / (cells.std(ddof=1) / math.sqrt(REPLICATES))
    assert (z.abs() < 4).all(), z


def test_doubly_robust_varies_less_than_ips_for_fixed_arm_candidates(
    estimates: pd.DataFrame,
) -> None:
    # Measured over the 200 logs per logging policy. The cross-fitted tabular model removes the
    # reward's dependence on the context from the IPS terms: for "always a" the sd drops by
    # 15-30%. (For the uniform candidate under uniform logging the gain is only ~7%, too small
    # to assert with 200 logs; it is not tested.)
    sd = estimates.pivot_table(
        index=["logging", "candidate"], columns="estimator", values="estimate", aggfunc="std"
    )
    fixed_arms = sd[sd.index.get_level_values("candidate").str.startswith("always")]
    assert len(fixed_arms) == 6
    assert (fixed_arms["dr"] < 0.9 * fixed_arms["ips"]).all(), fixed_arms


def test_a_per_segment_policy_is_worth_more_when_segments_prefer_different_arms() -> None:
    scenario = _scenario()
    result = run_replicate(scenario, scenario.policies[0], 0, keep_log=True)
    assert result.log is not None
    log = log_from_frame(result.log.frame())
    pooled = candidate_from_policy(log, PolicySpec("pooled", "thompson"))
    split = candidate_from_policy(log, PolicySpec("per segment", "thompson", per_segment=True))
    assert np.allclose(pooled.allocation[0], pooled.allocation[1])
    # Trained on 1000 uniform rounds, the per-segment policy finds each segment's best arm.
    assert split.allocation[0, 0] > 0.9
    assert split.allocation[1, 2] > 0.9

    def true_value(candidate: Candidate) -> float:
        return float(np.dot(SEGMENT_WEIGHTS, (candidate.allocation * SEGMENT_MEANS).sum(axis=1)))

    assert true_value(split) > true_value(pooled) + 0.08
    table = evaluate(log, [pooled, split]).set_index(["candidate", "estimator"])["estimate"]
    for estimator in ESTIMATORS:
        assert table["per segment", estimator] > table["pooled", estimator]


def test_standard_candidates_are_uniform_each_arm_and_the_trained_policies() -> None:
    scenario = _scenario()
    result = run_replicate(scenario, scenario.policies[0], 0, keep_log=True)
    assert result.log is not None
    log = log_from_frame(result.log.frame())
    names = [c.name for c in standard_candidates(log, [PolicySpec("ts", "thompson")])]
    assert names == ["uniform", "always arm 0", "always arm 1", "always arm 2", "ts"]


# --- the log's shape and validation ------------------------------------------------------


def _frame(**changes: Any) -> pd.DataFrame:
    data: dict[str, Any] = {
        "arm": [0, 1, 2, 0, 1, 2],
        "propensity": [1 / 3] * 6,
        "reward": [1.0, 0.0, 1.0, 0.0, 1.0, 1.0],
        "segment": ["a", "a", "a", "b", "b", "b"],
    }
    data.update(changes)
    return pd.DataFrame({k: v for k, v in data.items() if v is not None})


def test_a_variant_named_log_maps_names_to_arms_in_the_given_order() -> None:
    frame = _frame(arm=None, variant=["red", "blue", "red", "green", "blue", "red"])
    log = log_from_frame(frame, arms=["green", "red", "blue"])
    assert log.n_arms == 3
    assert log.arm.tolist() == [1, 2, 1, 0, 2, 1]
    assert log.segment.tolist() == [0, 0, 0, 1, 1, 1]
    assert log.segment_names == ("a", "b")
    # Without arms=, the variants are sorted by name.
    assert log_from_frame(frame).arm.tolist() == [2, 0, 2, 1, 0, 2]


def test_a_log_without_the_segment_column_is_one_segment() -> None:
    log = log_from_frame(_frame(segment=None))
    assert log.n_segments == 1
    assert log.segment_names == ("all",)
    assert log_from_frame(_frame(), segment_column=None).n_segments == 1


@pytest.mark.parametrize(
    ("changes", "arms", "field"),
    [
        ({"propensity": None}, None, "propensity"),
        ({"reward": None}, None, "reward"),
        ({"arm": None}, None, "arm"),
        ({"propensity": [1 / 3] * 5 + [0.0]}, None, "propensity"),
        ({"propensity": [1 / 3] * 5 + [1.5]}, None, "propensity"),
        ({"propensity": [1 / 3] * 5 + [math.nan]}, None, "propensity"),
        ({"reward": [1.0] * 5 + [math.inf]}, None, "reward"),
        ({"reward": [1.0] * 5 + [math.nan]}, None, "reward"),
        ({"reward": [1.0] * 5 + ["x"]}, None, "reward"),
        ({"arm": [0, 1, 2, 0, 1, 1.5]}, None, "arm"),
        ({"arm": [0, 1, 2, 0, 1, -1]}, None, "arm"),
        ({"arm": [0, 1, 2, 0, 1, "two"]}, None, "arm"),
        ({"arm": None, "variant": ["a", "b", "a", "b", "a", "zz"]}, ["a", "b"], "variant"),
    ],
)
def test_a_bad_log_raises_naming_the_column(
    changes: dict[str, Any], arms: list[str] | None, field: str
) -> None:
    with pytest.raises(ScenarioError) as raised:
        log_from_frame(_frame(**changes), arms=arms)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_an_empty_log_is_refused() -> None:
    with pytest.raises(ScenarioError, match="empty"):
        log_from_frame(_frame().iloc[:0])


def test_a_candidate_without_overlap_gets_a_note_not_a_number() -> None:
    # Arm "c" was never served: "always c" cannot be estimated from this log.
    frame = _frame(
        arm=None,
        variant=["a", "b", "a", "b", "a", "b"],
        propensity=[0.5] * 6,
        reward=[1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
    )
    log = log_from_frame(frame, arms=["a", "b", "c"])
    table = evaluate(log, [always(log, 2), always(log, 0)])
    never = table[table["candidate"] == "always arm 2"]
    assert never["estimator"].tolist() == list(ESTIMATORS)
    assert never["estimate"].isna().all()
    assert never["ci_low"].isna().all()
    assert never["note"].str.contains("probability 0 to every logged action").all(), never[
        "note"
    ].tolist()
    served = table[table["candidate"] == "always arm 0"]
    assert np.isfinite(served["estimate"]).all()
    assert (served["note"] == "").all()


def test_arms_given_with_an_arm_column_count_arms_never_served() -> None:
    # Three arms, the last never served: it must still be an arm (no overlap, a note), not
    # silently dropped, and an arm index beyond the named arms is an error.
    frame = _frame(arm=[0, 1, 0, 1, 0, 1], propensity=[0.5] * 6)
    log = log_from_frame(frame, arms=["a", "b", "c"])
    assert log.n_arms == 3
    assert log_from_frame(frame).n_arms == 2
    table = evaluate(log, [always(log, 2)])
    assert table["estimate"].isna().all()
    with pytest.raises(ScenarioError) as raised:
        log_from_frame(frame, arms=["a"])
    assert raised.value.field == "arm"


def test_a_missing_segment_is_a_segment_of_its_own() -> None:
    frame = pd.DataFrame(
        {
            "arm": [0, 1, 0, 1],
            "propensity": [0.5] * 4,
            "reward": [1.0, 0.0, 1.0, 0.0],
            "segment": ["a", None, "b", "a"],
        }
    )
    log = log_from_frame(frame)
    assert log.segment_names == ("<missing>", "a", "b")
    assert log.segment.tolist() == [1, 0, 2, 1]
