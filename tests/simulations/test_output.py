"""simulations.output: the files of a result directory, read back."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.image
import pandas as pd
import pytest

from simulations.engine import SimulationResult, run
from simulations.output import format_summary, markdown_table, write_outputs
from simulations.scenario import scenario_from_dict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POLICIES = ("thompson", "fixed")
REPLICATES = 3
CHECKPOINTS = 2000 // 200


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    scenario = scenario_from_dict(
        {
            "name": "tiny-output",
            "horizon": 2000,
            "update_interval": 200,
            "replicates": REPLICATES,
            "seed": 11,
            "environment": {"kind": "bernoulli", "means": [0.10, 0.15, 0.30]},
            "policies": [
                {"name": "thompson", "type": "thompson", "params": {"min_probability": 0.01}},
                {"name": "fixed", "type": "fixed"},
            ],
            "winner": {"p_best": 0.95, "min_samples": 50},
        }
    )
    return run(scenario, workers=1)


@pytest.fixture(scope="module")
def written(result: SimulationResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_outputs(result, tmp_path_factory.mktemp("out") / "nested")


def test_writes_every_file_and_returns_their_paths(written: dict[str, Path]) -> None:
    expected = {
        "checkpoints.parquet",
        "checkpoints.csv",
        "summary.csv",
        "summary.md",
        "replicates.csv",
        "scenario.json",
        "regret.png",
        "allocation.png",
        "winner.png",
    }
    assert set(written) == expected
    for name, path in written.items():
        assert path.name == name
        assert path.is_file()
        assert path.stat().st_size > 0
    assert not (written["summary.md"].parent / "decision_rules.csv").exists()


@pytest.mark.parametrize("name", ["regret.png", "allocation.png", "winner.png"])
def test_plots_are_real_pngs(written: dict[str, Path], name: str) -> None:
    path = written[name]
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000  # lines, legend, text: not a blank canvas
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert image.ndim == 3
    assert height >= 300
    assert width >= 500
    assert image.std() > 0.01  # something is drawn


@pytest.mark.parametrize("name", ["checkpoints.parquet", "checkpoints.csv"])
def test_checkpoints_round_trip(
    written: dict[str, Path], result: SimulationResult, name: str
) -> None:
    path = written[name]
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    expected = result.checkpoints()
    assert len(frame) == len(POLICIES) * REPLICATES * CHECKPOINTS
    assert list(frame.columns) == list(expected.columns)
    for column in (
        "policy",
        "replicate",
        "round",
        "learned",
        "cumulative_reward",
        "cumulative_regret",
        *(f"allocation_{a}" for a in range(3)),
        *(f"pulls_{a}" for a in range(3)),
    ):
        assert column in frame.columns
    assert set(frame["policy"]) == set(POLICIES)
    assert sorted(frame["round"].unique()) == list(range(200, 2001, 200))
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_summary_csv_and_markdown(written: dict[str, Path], result: SimulationResult) -> None:
    summary = pd.read_csv(written["summary.csv"])
    assert list(summary["policy"]) == list(POLICIES)
    assert len(summary) == len(POLICIES)
    text = written["summary.md"].read_text(encoding="utf-8")
    assert text.startswith("# tiny-output")
    for policy in POLICIES:
        assert f"| {policy}" in text
    assert "final_regret_mean" in text
    assert text == format_summary(result)


def test_scenario_json_describes_the_run(written: dict[str, Path]) -> None:
    data = json.loads(written["scenario.json"].read_text(encoding="utf-8"))
    assert data["name"] == "tiny-output"
    assert (data["horizon"], data["update_interval"], data["replicates"], data["seed"]) == (
        2000,
        200,
        3,
        11,
    )
    assert [p["name"] for p in data["policies"]] == list(POLICIES)
    assert data["policies"][0] == {
        "name": "thompson",
        "type": "thompson",
        "params": {"min_probability": 0.01},
        "weights": None,
        "per_segment": False,
    }
    assert data["environment"]["class"] == "StationaryArms"
    assert data["environment"]["params"]["arm_means"] == [0.10, 0.15, 0.30]
    assert data["environment"]["params"]["reward"] == "bernoulli"
    assert data["winner"]["p_best"] == 0.95
    assert data["winner"]["max_expected_loss"] == "inf"  # strict JSON: no Infinity literal


def test_csv_only_and_no_winner_plot_without_a_winner_rule(
    result: SimulationResult, tmp_path: Path
) -> None:
    plain = SimulationResult(replace(result.scenario, winner=None), result.replicates)
    written = write_outputs(plain, tmp_path, formats=("csv",))
    assert "checkpoints.parquet" not in written
    assert "winner.png" not in written
    assert not (tmp_path / "winner.png").exists()
    assert {"checkpoints.csv", "regret.png", "allocation.png"} <= set(written)


def test_unknown_format_is_refused(result: SimulationResult, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xlsx"):
        write_outputs(result, tmp_path, formats=("xlsx",))


def test_decision_rules_tables_when_replicates_ran_rules(
    result: SimulationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    def summarize_rules(res: SimulationResult) -> pd.DataFrame:
        calls.append(res)
        return pd.DataFrame({"rule": ["msprt | alpha 0.05"], "stopped": [0.5]})

    fake = types.ModuleType("simulations.rules")
    fake.summarize_rules = summarize_rules  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "simulations.rules", fake)
    replicates = [replace(r, rules={"msprt": {"stopped_at": 400}}) for r in result.replicates]
    with_rules = SimulationResult(result.scenario, replicates)

    written = write_outputs(with_rules, tmp_path, formats=())
    assert {"decision_rules.csv", "decision_rules.md"} <= set(written)
    assert pd.read_csv(written["decision_rules.csv"])["stopped"].tolist() == [0.5]
    rules_md = written["decision_rules.md"].read_text(encoding="utf-8")
    assert "msprt \\| alpha 0.05" in rules_md
    assert "## Decision rules" in written["summary.md"].read_text(encoding="utf-8")
    assert len(calls) == 1
    assert calls[0] is with_rules


def test_markdown_table_formats_cells() -> None:
    frame = pd.DataFrame(
        {"policy": ["a", "b"], "n": [1, 20], "x": [12345.6, float("nan")], "ok": [True, False]}
    )
    lines = markdown_table(frame).splitlines()
    assert lines[0].split("|")[1].strip() == "policy"
    assert set(lines[1]) <= {"|", "-", ":", " "}
    assert lines[2].split("|")[1:-1] == [" a      ", "   1 ", " 12346 ", " yes "]
    assert lines[3].split("|")[3].strip() == ""  # NaN is an empty cell


def test_replicates_table_has_one_row_per_policy_and_replicate(
    result: SimulationResult, written: dict[str, Path]
) -> None:
    table = pd.read_csv(written["replicates.csv"])
    assert len(table) == len(result.replicates)
    by_run = table.set_index(["policy", "replicate"])
    for r in result.replicates:
        assert by_run.loc[(r.policy, r.replicate), "final_regret"] == pytest.approx(r.final_regret)
        declared = by_run.loc[(r.policy, r.replicate), "winner_round"]
        assert (pd.isna(declared) and r.winner_round is None) or declared == r.winner_round


def test_feedback_loop_study_tables_are_written_when_the_scenario_estimates_arms(
    tmp_path: Path,
) -> None:
    scenario = scenario_from_dict(
        {
            "name": "loop",
            "horizon": 600,
            "update_interval": 60,
            "replicates": 3,
            "seed": 4,
            "estimate_arms": True,
            "environment": {"kind": "bernoulli", "means": [0.4, 0.6]},
            "policies": [{"type": "greedy"}, {"type": "thompson"}],
        }
    )
    written = write_outputs(run(scenario, workers=1), tmp_path)
    loop = pd.read_csv(written["feedback_loop.csv"])
    assert loop["policy"].tolist() == ["greedy", "thompson"]
    arms = pd.read_csv(written["arm_estimates.csv"])
    assert len(arms) == 4
    summary = written["summary.md"].read_text()
    assert "## Feedback loop" in summary
    assert "## Arm estimates" in summary
