"""`croupier simulate` and `croupier replay` end to end, and every shipped scenario runs."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from simulations.engine import run
from simulations.output import write_outputs
from simulations.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).parents[2] / "simulations" / "scenarios").glob("*.toml"))
TINY = """
name = "tiny-cli"
horizon = 2000
update_interval = 200
replicates = 2
seed = 5

[environment]
kind = "bernoulli"
means = [0.1, 0.2, 0.4]

[winner]
p_best = 0.95
min_samples = 50

[[policies]]
name = "thompson"
type = "thompson"
params = { min_probability = 0.05 }

[[policies]]
name = "uniform split"
type = "fixed"
"""
ESTIMATORS = ["ips", "snips", "dr"]


class Ran(NamedTuple):
    code: int
    out: str
    err: str


def croupier(*argv: str | Path) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, Path]:
    root = tmp_path_factory.mktemp("simulate")
    scenario = root / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    out = root / "out"
    ran = croupier("simulate", scenario, "--out", out, "--workers", "1", "--logs", "--no-progress")
    return ran, out


def test_simulate_prints_the_summary_and_writes_every_file(simulated: tuple[Ran, Path]) -> None:
    ran, out = simulated
    assert ran.code == 0, ran.err
    assert "| policy" in ran.out
    assert "| thompson " in ran.out
    assert "| uniform split " in ran.out
    assert "4 runs" in ran.out
    expected = {
        "checkpoints.parquet",
        "checkpoints.csv",
        "summary.csv",
        "summary.md",
        "regret.png",
        "allocation.png",
        "winner.png",
        "scenario.json",
        "logs.parquet",
    }
    assert expected <= {p.name for p in out.iterdir()}
    for name in expected:
        assert name in ran.out
    checkpoints = pd.read_parquet(out / "checkpoints.parquet")
    assert len(checkpoints) == 2 * 2 * 10
    logs = pd.read_parquet(out / "logs.parquet")
    assert len(logs) == 2 * 2 * 2000
    assert set(logs["policy"]) == {"thompson", "uniform split"}
    assert set(logs["replicate"]) == {0, 1}
    # The per-round metrics add up to the checkpoints' cumulative regret, run by run.
    final = checkpoints.groupby(["policy", "replicate"])["cumulative_regret"].last()
    per_round = logs.groupby(["policy", "replicate"])["regret"].sum()
    assert per_round.to_numpy() == pytest.approx(final.loc[per_round.index].to_numpy())
    assert json.loads((out / "scenario.json").read_text())["name"] == "tiny-cli"


def test_simulate_with_format_csv_writes_only_the_csv_checkpoints(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY.replace("horizon = 2000", "horizon = 400"), encoding="utf-8")
    out = tmp_path / "out"
    ran = croupier(
        "simulate", scenario, "--out", out, "--format", "csv", "--workers", "1", "--no-progress"
    )
    assert ran.code == 0, ran.err
    assert (out / "checkpoints.csv").is_file()
    assert not (out / "checkpoints.parquet").exists()
    assert not (out / "logs.parquet").exists()
    assert len(pd.read_csv(out / "checkpoints.csv")) == 2 * 2 * 2


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("seed = 5", "seed = 5\nhorizn = 10", "horizn"),
        ("min_samples = 50", "min_samples = 50\nmin_sample = 3", "winner.min_sample"),
        (
            "min_probability = 0.05",
            "min_probability = 0.5",
            "policies.thompson.params.min_probability",
        ),
        ('type = "fixed"', 'type = "nonsense"', "policies.uniform split.type"),
        ("means = [0.1, 0.2, 0.4]", "means = [0.1, 0.2, 1.4]", "environment.means"),
    ],
)
def test_a_bad_scenario_exits_2_naming_the_key_and_writes_nothing(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    assert old in TINY
    scenario = tmp_path / "bad.toml"
    scenario.write_text(TINY.replace(old, new), encoding="utf-8")
    out = tmp_path / "out"
    ran = croupier("simulate", scenario, "--out", out, "--workers", "1", "--no-progress")
    assert ran.code == 2
    assert ran.err.startswith(f"error: {scenario}: {key}: "), ran.err
    assert "Traceback" not in ran.err
    assert ran.out == ""
    assert not out.exists()


def test_simulate_a_missing_scenario_file_exits_2(tmp_path: Path) -> None:
    ran = croupier("simulate", tmp_path / "nope.toml", "--out", tmp_path / "out")
    assert ran.code == 2
    assert "cannot read" in ran.err
    assert not (tmp_path / "out").exists()


# --- replay -----------------------------------------------------------------------------------


def test_replay_refuses_a_log_of_several_logging_policies(simulated: tuple[Ran, Path]) -> None:
    # logs.parquet holds both policies' decisions; pooling them would report a "logged policy"
    # that never existed.
    _, out = simulated
    ran = croupier("replay", out / "logs.parquet", "--policy", "thompson")
    assert ran.code == 2
    assert "2 logging policies" in ran.err
    assert "--where policy=NAME" in ran.err
    assert ran.out == ""


def test_replay_json_estimates_every_candidate_on_one_policy_s_log(
    simulated: tuple[Ran, Path],
) -> None:
    _, out = simulated
    ran = croupier(
        "replay",
        out / "logs.parquet",
        "--where",
        "policy=thompson",
        "--policy",
        "thompson",
        "--format",
        "json",
    )
    assert ran.code == 0, ran.err
    result = json.loads(ran.out)
    logs = pd.read_parquet(out / "logs.parquet")
    thompson = logs[logs["policy"] == "thompson"]
    assert result["logged"]["estimate"] == pytest.approx(thompson["reward"].mean())
    table = pd.DataFrame(result["estimates"])
    candidates = ["uniform", "always arm 0", "always arm 1", "always arm 2", "thompson"]
    assert table["candidate"].tolist() == [c for c in candidates for _ in ESTIMATORS]
    assert table["estimator"].tolist() == ESTIMATORS * len(candidates)
    assert (table["note"] == "").all()
    assert np.isfinite(table[["estimate", "ci_low", "ci_high"]].to_numpy(dtype=float)).all()
    value = table.set_index(["candidate", "estimator"])["estimate"]
    # Arms 0.1, 0.2, 0.4: the estimates rank the fixed arms, and Thompson trained on 4000
    # decisions is worth close to the best arm.
    for estimator in ESTIMATORS:
        assert value["always arm 0", estimator] < value["always arm 2", estimator]
        assert value["always arm 1", estimator] < value["always arm 2", estimator]
        assert value["thompson", estimator] > value["uniform", estimator]


def test_replay_where_selects_a_replicate_too(simulated: tuple[Ran, Path]) -> None:
    _, out = simulated
    ran = croupier(
        "replay",
        out / "logs.parquet",
        "--where",
        "policy=uniform split",
        "--where",
        "replicate=1",
        "--format",
        "json",
    )
    assert ran.code == 0, ran.err
    logs = pd.read_parquet(out / "logs.parquet")
    rows = logs[(logs["policy"] == "uniform split") & (logs["replicate"] == 1)]
    assert json.loads(ran.out)["logged"]["estimate"] == pytest.approx(rows["reward"].mean())


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("policy", "expected COLUMN=VALUE"),
        ("arms=1", "no 'arms' column"),
        ("policy=nobody", "no rows of the log match"),
    ],
)
def test_replay_a_bad_where_exits_2(simulated: tuple[Ran, Path], where: str, message: str) -> None:
    _, out = simulated
    ran = croupier("replay", out / "logs.parquet", "--where", where)
    assert ran.code == 2
    assert message in ran.err
    assert "Traceback" not in ran.err


def test_replay_markdown_prints_the_logged_value_and_a_table(simulated: tuple[Ran, Path]) -> None:
    _, out = simulated
    ran = croupier(
        "replay", out / "logs.parquet", "--where", "policy=thompson", "--policy", "thompson"
    )
    assert ran.code == 0, ran.err
    assert ran.out.startswith("Logged policy: mean reward ")
    assert "over 4000 decisions, 3 arms" in ran.out
    assert "| candidate" in ran.out
    assert "| thompson " in ran.out
    assert "| always arm 2 " in ran.out


def test_replay_json_reports_an_unestimable_candidate_as_null(tmp_path: Path) -> None:
    # Arm 1 was never served: "always arm 1" has no estimate, and JSON has no NaN.
    path = tmp_path / "log.csv"
    rng = np.random.default_rng(3)
    arm = rng.choice([0, 2], size=200)
    reward = rng.random(200) < np.where(arm == 0, 0.3, 0.6)
    pd.DataFrame({"arm": arm, "propensity": 0.5, "reward": reward.astype(float)}).to_csv(
        path, index=False
    )
    ran = croupier("replay", path, "--format", "json")
    assert ran.code == 0, ran.err

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant}")

    table = pd.DataFrame(json.loads(ran.out, parse_constant=refuse)["estimates"])
    never = table[table["candidate"] == "always arm 1"]
    assert len(never) == 3
    assert never["estimate"].isna().all()
    assert never["note"].str.contains("probability 0 to every logged action").all()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("thompson:{bad json", "parameters must be a JSON object"),
        ("thompson:[1, 2]", "parameters must be a JSON object"),
        ('thompson:{"min_probability": 0.9}', "min_probability"),
        ("nonsense", "nonsense"),
    ],
)
def test_replay_a_bad_policy_exits_2_with_a_clear_message(
    simulated: tuple[Ran, Path], policy: str, message: str
) -> None:
    _, out = simulated
    ran = croupier("replay", out / "logs.parquet", "--where", "policy=thompson", "--policy", policy)
    assert ran.code == 2
    assert ran.err.startswith("error: ")
    assert message in ran.err
    assert "Traceback" not in ran.err
    assert ran.out == ""


@pytest.mark.parametrize("name", ["missing.parquet", "missing.csv", "log.txt"])
def test_replay_a_missing_or_unreadable_log_exits_2(tmp_path: Path, name: str) -> None:
    ran = croupier("replay", tmp_path / name)
    assert ran.code == 2
    assert ran.err.startswith("error: ")
    assert ran.out == ""


def test_replay_a_log_without_propensities_exits_2_naming_the_column(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame({"arm": [0, 1], "reward": [1.0, 0.0]}).to_csv(path, index=False)
    ran = croupier("replay", path)
    assert ran.code == 2
    assert ran.err.startswith("error: propensity: ")


# --- every shipped scenario runs --------------------------------------------------------------


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_runs_end_to_end(path: Path, tmp_path: Path) -> None:
    full = load_scenario(path)
    scenario = dataclasses.replace(full, horizon=2 * full.update_interval, replicates=1)
    result = run(scenario, workers=1)
    written = write_outputs(result, tmp_path / "out")
    for name in ("checkpoints.parquet", "summary.md", "scenario.json", "regret.png"):
        assert written[name].is_file()
    assert ("winner.png" in written) == (scenario.winner is not None)
    assert ("decision_rules.md" in written) == (scenario.decision_rules is not None)
    checkpoints = pd.read_parquet(written["checkpoints.parquet"])
    assert len(checkpoints) == 2 * len(scenario.policies)
    assert checkpoints["round"].max() == scenario.horizon


def test_replay_segment_column_must_exist_when_named(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    rng = np.random.default_rng(4)
    pd.DataFrame(
        {
            "arm": rng.integers(0, 2, 300),
            "propensity": 0.5,
            "reward": rng.random(300),
            "device": rng.choice(["mobile", "desktop"], 300),
        }
    ).to_csv(path, index=False)
    assert "1 segment(s)" in croupier("replay", path).out
    ran = croupier("replay", path, "--segment-column", "device")
    assert ran.code == 0, ran.err
    assert "2 segment(s)" in ran.out
    ran = croupier("replay", path, "--segment-column", "region")
    assert ran.code == 2
    assert ran.err.startswith("error: segment-column: the log has no 'region' column")


@pytest.mark.parametrize(
    ("env", "live", "message"),
    [
        ({}, "http://127.0.0.1:9", "CROUPIER_API_KEY"),
        ({"CROUPIER_API_KEY": "crp_x_y"}, "http://127.0.0.1:9", "no Croupier server answers"),
        ({"CROUPIER_API_KEY": "crp_x_y"}, "not-a-url", "no Croupier server answers"),
    ],
)
def test_simulate_live_problems_are_found_before_the_simulation_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], live: str, message: str
) -> None:
    monkeypatch.delenv("CROUPIER_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    out = tmp_path / "out"
    ran = croupier("simulate", scenario, "--out", out, "--live", live, "--no-progress")
    assert ran.code == 2
    assert ran.err.startswith("error: --live: ")
    assert message in ran.err
    assert not out.exists()  # nothing was simulated


def test_simulate_out_must_be_a_directory(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    (tmp_path / "file").write_text("x")
    ran = croupier("simulate", scenario, "--out", tmp_path / "file", "--no-progress")
    assert ran.code == 2
    assert "is not a directory" in ran.err


def test_replay_a_policy_that_cannot_learn_from_the_log_exits_2(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("arm,propensity,reward\n0,0.5,3.0\n1,0.5,2.0\n0,0.5,5.0\n1,0.5,1.0\n")
    ran = croupier("replay", log, "--policy", "thompson")
    assert ran.code == 2
    assert "cannot learn from this log" in ran.err
    assert "Traceback" not in ran.err
