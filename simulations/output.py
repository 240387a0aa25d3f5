"""A simulation's result directory: tables, a self-describing scenario.json, and plots.

`write_outputs(result, out_dir)` writes

* `checkpoints.parquet` / `checkpoints.csv`: `SimulationResult.checkpoints()`, one row per
  policy x replicate x checkpoint;
* `summary.csv` / `summary.md`: `SimulationResult.summary()`, one row per policy;
* `replicates.csv`: one row per policy x replicate (final regret, declared winner, ...);
* `decision_rules.csv` / `.md`: `simulations.rules.summarize_rules(result)`, only when some
  replicate ran decision rules; `feedback_loop.csv` / `.md` and `arm_estimates.csv` / `.md`
  (`simulations.studies`) when the scenario sets `estimate_arms`;
* `scenario.json`: everything needed to tell what was run;
* `regret.png`, `allocation.png` and, with a `[winner]` table, `winner.png`.

Plots are drawn on `matplotlib.figure.Figure` objects with their own Agg canvas: no pyplot,
no global backend switch, nothing that affects another user of matplotlib in the process.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import MaxNLocator

from simulations.engine import ReplicateResult, SimulationResult
from simulations.environments import DriftingArms
from simulations.scenario import Scenario
from simulations.studies import arm_estimate_table, feedback_loop_table

FloatArray = npt.NDArray[np.float64]

FORMATS = ("parquet", "csv")
"""Formats of the checkpoints table."""
DPI = 100
BAND = (10.0, 90.0)
"""Percentiles across replicates of the band around the mean regret."""


def write_outputs(
    result: SimulationResult,
    out_dir: Path,
    *,
    formats: Sequence[str] = ("parquet", "csv"),
) -> dict[str, Path]:
    """Write every table, scenario.json and the plots to `out_dir` (created if needed).

    Returns file name -> path of everything written ("regret.png" -> out_dir / "regret.png").
    Raises ValueError for a format other than "parquet" or "csv".
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown checkpoint format(s) {unknown}; expected some of {FORMATS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def target(name: str) -> Path:
        path = out_dir / name
        written[name] = path
        return path

    checkpoints = result.checkpoints()
    if "parquet" in formats:
        checkpoints.to_parquet(target("checkpoints.parquet"), index=False)
    if "csv" in formats:
        checkpoints.to_csv(target("checkpoints.csv"), index=False)

    summary = result.summary()
    studies = study_tables(result)
    summary.to_csv(target("summary.csv"), index=False)
    result.replicates_frame().to_csv(target("replicates.csv"), index=False)
    target("summary.md").write_text(_summary_text(result, summary, studies), encoding="utf-8")
    for name, table in studies.items():
        table.to_csv(target(f"{name}.csv"), index=False)
        title = name.replace("_", " ")
        text = f"# {result.scenario.name}: {title}\n\n{markdown_table(table)}"
        target(f"{name}.md").write_text(text, encoding="utf-8")

    text = json.dumps(scenario_dict(result.scenario), indent=2, allow_nan=False)
    target("scenario.json").write_text(text + "\n", encoding="utf-8")

    _save(regret_figure(result), target("regret.png"))
    _save(allocation_figure(result), target("allocation.png"))
    if result.scenario.winner is not None:
        _save(winner_figure(result), target("winner.png"))
    return written


def format_summary(result: SimulationResult) -> str:
    """The markdown summary: what was run, one row per policy, and the studies' tables."""
    return _summary_text(result, result.summary(), study_tables(result))


def study_tables(result: SimulationResult) -> dict[str, pd.DataFrame]:
    """The scenario's study tables, by file stem.

    * "decision_rules": `simulations.rules.summarize_rules`, when some replicate ran rules;
    * "feedback_loop" and "arm_estimates": `simulations.studies`, when the scenario sets
      estimate_arms.
    """
    tables: dict[str, pd.DataFrame] = {}
    rules = decision_rules_table(result)
    if rules is not None:
        tables["decision_rules"] = rules
    if result.scenario.estimate_arms:
        tables["feedback_loop"] = feedback_loop_table(result)
        tables["arm_estimates"] = arm_estimate_table(result)
    return tables


def decision_rules_table(result: SimulationResult) -> pd.DataFrame | None:
    """`simulations.rules.summarize_rules(result)`, or None when no replicate ran any rule."""
    if not any(r.rules for r in result.replicates):
        return None
    # Imported only when needed: plain simulations never touch the decision-rule module.
    from simulations.rules import summarize_rules

    return summarize_rules(result)


def _summary_text(
    result: SimulationResult, summary: pd.DataFrame, studies: Mapping[str, pd.DataFrame]
) -> str:
    s = result.scenario
    lines = [f"# {s.name}", ""]
    if s.description:
        lines += [s.description.strip(), ""]
    lines += [
        f"{s.horizon:,} rounds, an update every {s.update_interval:,} rounds, "
        f"{s.replicates} replicate{'' if s.replicates == 1 else 's'}, seed {s.seed}; "
        f"{type(s.environment).__name__} with {s.environment.n_arms} arms"
        f" ({result.seconds:.1f} s).",
        "",
    ]
    if s.winner is not None:
        w = s.winner
        loss = (
            "" if math.isinf(w.max_expected_loss) else f", expected loss <= {w.max_expected_loss}"
        )
        lines += [
            f"Winner criterion: P(best) >= {w.p_best}{loss}, every arm >= {w.min_samples} "
            f"samples, held {w.hold_updates} update(s). `wrong_winner`: the share of all "
            "replicates (not of those that declared) whose declared winner was not the best "
            "arm when declared.",
            "",
        ]
    lines += [markdown_table(summary)]
    for name, table in studies.items():
        lines += ["", f"## {name.replace('_', ' ').capitalize()}", "", markdown_table(table)]
    return "\n".join(lines)


# --- markdown --------------------------------------------------------------------------------


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of `frame` (numbers right-aligned), ending in a newline."""
    columns = [str(c) for c in frame.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        for c in frame.columns
    ]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    widths = [max([len(name), 3, *(len(row[i]) for row in rows)]) for i, name in enumerate(columns)]

    def line(cells: Iterable[str]) -> str:
        padded = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (w - 1) + ":" if right else "-" * w for w, right in zip(widths, numeric, strict=True)
    ]
    return "\n".join([line(columns), line(rule), *(line(r) for r in rows)]) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0 and abs(v) >= 1000:
            return f"{v:.0f}"
        return f"{v:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


# --- scenario.json ---------------------------------------------------------------------------


def scenario_dict(scenario: Scenario) -> dict[str, Any]:
    """What was run, as JSON-ready data (non-finite numbers become "inf", "-inf", "nan").

    Every field of `Scenario` is included (a field added later too), the environment as its
    class name and dataclass fields, each policy with the service's type and parameters.
    """
    env = scenario.environment
    data: dict[str, Any] = {
        "name": scenario.name,
        "description": scenario.description,
        "horizon": scenario.horizon,
        "update_interval": scenario.update_interval,
        "replicates": scenario.replicates,
        "seed": scenario.seed,
        "environment": {
            "class": type(env).__name__,
            "n_arms": env.n_arms,
            "n_segments": env.n_segments,
            "params": {f.name: getattr(env, f.name) for f in dataclasses.fields(env)},
        },
        "policies": [
            {
                "name": p.name,
                "type": p.kind,
                "params": p.params,
                "weights": p.weights,
                "per_segment": p.per_segment,
            }
            for p in scenario.policies
        ],
    }
    for f in dataclasses.fields(scenario):
        if f.name not in data:
            value = getattr(scenario, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            data[f.name] = value
    result: dict[str, Any] = _jsonable(data)
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# --- plots -----------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    layout = ConstrainedLayoutEngine(wspace=0.06, hspace=0.06)
    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)  # its own Agg canvas: no pyplot, no global backend
    return figure


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI, format="png")


def _stack(results: Sequence[ReplicateResult], attribute: str) -> FloatArray:
    """(replicates, checkpoints, ...) array of one per-checkpoint attribute."""
    return np.stack([np.asarray(getattr(r, attribute), dtype=np.float64) for r in results])


def _colors(n: int) -> list[str]:
    return [f"C{i % 10}" for i in range(n)]


def regret_figure(result: SimulationResult) -> Figure:
    """Cumulative pseudo-regret vs rounds: mean over replicates, with a percentile band."""
    scenario = result.scenario
    figure = _figure(8.0, 5.0)
    ax = figure.add_subplot()
    groups = [(name, rs) for name, rs in result.by_policy() if rs]
    n_reps = 0
    for (name, results), color in zip(groups, _colors(len(groups)), strict=True):
        rounds = np.concatenate([[0.0], results[0].rounds.astype(np.float64)])
        regret = _stack(results, "cumulative_regret")
        regret = np.hstack([np.zeros((regret.shape[0], 1)), regret])
        low, high = np.percentile(regret, BAND, axis=0)
        mean = regret.mean(axis=0)
        ax.plot(rounds, mean, color=color, lw=2, label=f"{name} (final {mean[-1]:.4g})")
        if regret.shape[0] > 1:
            ax.fill_between(rounds, low, high, color=color, alpha=0.2, lw=0)
        n_reps = max(n_reps, regret.shape[0])
    band = f"{BAND[0]:.0f}th-{BAND[1]:.0f}th percentile across replicates"
    ax.set_title(
        f"{scenario.name}: cumulative regret\nline: mean of {n_reps} replicates; band: {band}",
        fontsize=11,
    )
    ax.set_xlabel("rounds (decisions)")
    ax.set_ylabel("cumulative pseudo-regret")
    ax.set_xlim(0, scenario.horizon)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", title="policy (mean final regret)")
    return figure


def allocation_figure(result: SimulationResult) -> Figure:
    """Each arm's mean serving probability over time, one stacked-area subplot per policy."""
    scenario = result.scenario
    groups = [(name, rs) for name, rs in result.by_policy() if rs]
    columns = min(len(groups), 3)
    rows = -(-len(groups) // columns)
    figure = _figure(4.2 * columns + 1.6, 3.4 * rows + 0.8)
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    n_arms = scenario.environment.n_arms
    colors = _colors(n_arms)
    best = {r.best_arm for r in result.replicates}  # the best arm at the end of the horizon
    mark = " (best at end)" if isinstance(scenario.environment, DriftingArms) else " (best)"
    labels = [f"arm {a}{mark}" if best == {a} else f"arm {a}" for a in range(n_arms)]
    for ax, (name, results) in zip(axes.flat, groups, strict=False):
        allocation = _stack(results, "allocation").mean(axis=0)  # (checkpoints, K)
        # allocation[c] is the mean over the block ending at rounds[c]: draw it as steps.
        rounds = np.concatenate([[0.0], results[0].rounds.astype(np.float64)])
        shares = np.vstack([allocation[:1], allocation]).T
        ax.stackplot(rounds, shares, colors=colors, labels=labels, step="pre", alpha=0.85)
        ax.set_title(f"{name} (mean of {len(results)} replicates)", fontsize=10)
        ax.set_xlim(0, scenario.horizon)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for index, ax in enumerate(axes.flat):
        if index >= len(groups):
            ax.set_visible(False)
        elif index + columns >= len(groups):  # the lowest panel of its column
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("rounds (decisions)")
    for ax in axes[:, 0]:
        ax.set_ylabel("probability served")
    handles, legend_labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="outside right center", title="arm")
    figure.suptitle(f"{scenario.name}: allocation over time (mean over each update interval)")
    return figure


def winner_figure(result: SimulationResult) -> Figure:
    """Per policy, the share of replicates that had declared a winner by each round.

    Solid: any winner; dashed (drawn only when it happened): a wrong winner, an arm that was
    not the best when declared.
    """
    scenario = result.scenario
    if scenario.winner is None:
        raise ValueError("the scenario has no [winner] criterion")
    rule = scenario.winner
    figure = _figure(10.0, 5.0)
    ax = figure.add_subplot()
    groups = [(name, rs) for name, rs in result.by_policy() if rs]
    grid = np.concatenate([[0], groups[0][1][0].rounds]) if groups else np.array([0])
    any_wrong = False
    for (name, results), color in zip(groups, _colors(len(groups)), strict=True):
        n = len(results)
        declared = np.array([r.winner_round for r in results if r.winner_round is not None])
        wrong = np.array(
            [r.winner_round for r in results if r.winner_round is not None and not r.winner_correct]
        )
        share = (declared[None, :] <= grid[:, None]).sum(axis=1) / n
        label = f"{name}: any winner ({declared.size}/{n})"
        ax.step(grid, share, where="post", color=color, lw=2, label=label)
        if wrong.size:
            any_wrong = True
            wrong_share = (wrong[None, :] <= grid[:, None]).sum(axis=1) / n
            ax.step(
                grid,
                wrong_share,
                where="post",
                color=color,
                lw=1.5,
                ls="--",
                label=f"{name}: wrong winner ({wrong.size}/{n})",
            )
    loss = "" if math.isinf(rule.max_expected_loss) else f", loss <= {rule.max_expected_loss:g}"
    criterion = (
        f"P(best) >= {rule.p_best:g}{loss}, >= {rule.min_samples} samples per arm, "
        f"held {rule.hold_updates} update(s)"
    )
    note = "dashed: wrong winners" if any_wrong else "no wrong winner declared"
    ax.set_title(f"{scenario.name}: time to a declared winner\n{criterion}; {note}", fontsize=11)
    ax.set_xlabel("rounds (decisions)")
    ax.set_ylabel("share of replicates declared by then")
    ax.set_xlim(0, scenario.horizon)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    figure.legend(loc="outside right upper", title="policy: declared / replicates")
    return figure
