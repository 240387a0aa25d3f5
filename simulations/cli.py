"""`croupier simulate` and `croupier replay`: the simulations' command line.

app/cli.py registers these sub-commands and calls in here lazily, so the service's own commands
never import pandas, matplotlib or the simulations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from simulations.environments import ScenarioError


def add_parsers(sub: Any) -> None:
    simulate = sub.add_parser(
        "simulate",
        help="run an offline policy simulation scenario (TOML)",
        description="Run every policy of SCENARIO for its replicates, in parallel, and write "
        "per-round metrics, a summary table and plots to --out.",
    )
    simulate.add_argument("scenario", type=Path, help="scenario file (TOML)")
    simulate.add_argument("--replicates", type=_positive, help="override the scenario's replicates")
    simulate.add_argument("--out", type=Path, help="output directory (default: sim-out/NAME)")
    simulate.add_argument("--workers", type=_positive, help="processes (default: one per core)")
    simulate.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=("parquet", "csv"),
        help="per-round metrics format (repeatable; default both)",
    )
    simulate.add_argument(
        "--logs", action="store_true", help="also write every decision (logs.parquet)"
    )
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")
    simulate.add_argument(
        "--live",
        metavar="URL",
        help="also drive a running Croupier server at URL with the scenario and compare its "
        "allocations with the in-process simulation (API key: CROUPIER_API_KEY)",
    )

    replay = sub.add_parser(
        "replay",
        help="off-policy evaluation of candidate policies on logged decisions",
        description="Estimate, with IPS, SNIPS and DR, the value of uniform random, each "
        "fixed arm and the given policies (trained on the log) from a log of decisions with "
        "propensities (CSV or Parquet with columns arm|variant, propensity, reward[, segment]). "
        "A log of several logging policies (a `policy` column with more than one value, as "
        "`croupier simulate --logs` writes) is refused: pick one with --where policy=NAME.",
    )
    replay.add_argument("log", type=Path)
    replay.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="keep only the rows whose COLUMN equals VALUE, e.g. policy=thompson (repeatable)",
    )
    replay.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="TYPE[:JSON]",
        help="a candidate, e.g. thompson or 'epsilon_greedy:{\"epsilon\": 0.05}' (repeatable)",
    )
    replay.add_argument("--per-segment", action="store_true", help="one policy per segment")
    replay.add_argument(
        "--segment-column",
        help="the context column (default: segment, if the log has one)",
    )
    replay.add_argument("--alpha", type=_probability, default=0.05, help="in (0, 1)")
    replay.add_argument("--format", choices=("md", "csv", "json"), default="md")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulations.engine import run
    from simulations.output import format_summary, write_outputs
    from simulations.scenario import load_scenario

    try:
        scenario = load_scenario(args.scenario).with_replicates(args.replicates)
    except ScenarioError as exc:
        print(f"error: {args.scenario}: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("sim-out") / scenario.name
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    live_key = os.environ.get("CROUPIER_API_KEY")
    if args.live:
        problem = _live_problem(args.live, live_key)
        if problem is not None:  # before minutes of simulation, not after
            print(f"error: --live: {problem}", file=sys.stderr)
            return 2
    result = run(
        scenario,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
        keep_log=args.logs,
    )
    written = write_outputs(result, out, formats=tuple(args.formats or ("parquet", "csv")))
    if args.logs:
        written["logs"] = _write_logs(result, out)
    print(format_summary(result))
    if args.live and live_key:
        print(_live(args.live, live_key, scenario, result))
    print(f"\n{len(result.replicates)} runs in {result.seconds:.1f} s; wrote to {out}/:")
    for name in sorted(written):
        print(f"  {written[name].name}")
    return 0


def _write_logs(result: Any, out: Path) -> Path:
    import pandas as pd

    frames = []
    for r in result.replicates:
        frame = r.log.frame()
        frame.insert(0, "replicate", r.replicate)
        frame.insert(0, "policy", r.policy)
        frames.append(frame)
    path = out / "logs.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
    return path


def _live_problem(url: str, key: str | None) -> str | None:
    """Why --live cannot run (no key, no server at URL), or None."""
    import httpx

    if not key:
        return "an admin API key is needed in CROUPIER_API_KEY"
    try:
        response = httpx.get(f"{url.rstrip('/')}/readyz", timeout=5.0)
    except (httpx.HTTPError, ValueError) as exc:
        return f"no Croupier server answers at {url}: {exc}"
    if response.status_code != 200:
        return f"the server at {url} is not ready ({response.status_code})"
    return None


def _live(url: str, key: str, scenario: Any, result: Any) -> str:
    from simulations.live import LiveError, compare, format_comparison, run_live
    from simulations.scenario import GREEDY

    lines = []
    for spec in scenario.policies:
        if spec.kind == GREEDY or spec.per_segment:
            lines.append(f"live {spec.name}: skipped (a simulation-only policy)")
            continue
        try:
            live = run_live(scenario, base_url=url, api_key=key, policy=spec.name)
            comparison = compare(live, result)
        except (LiveError, ValueError) as exc:
            lines.append(f"live {spec.name}: failed: {exc}")
            continue
        lines += [f"live {spec.name}:", format_comparison(comparison)]
    return "\n".join(lines)


def cmd_replay(args: argparse.Namespace) -> int:
    from simulations.replay import (
        evaluate,
        log_from_frame,
        logged_value,
        read_log,
        standard_candidates,
    )

    try:
        frame = _single_logging_policy(_where(read_log(args.log), args.where))
        if args.segment_column is not None and args.segment_column not in frame.columns:
            raise ScenarioError("segment-column", f"the log has no {args.segment_column!r} column")
        log = log_from_frame(frame, segment_column=args.segment_column or "segment")
        specs = [_policy_spec(text, args.per_segment) for text in args.policy]
        candidates = standard_candidates(log, specs)
    except (ScenarioError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = evaluate(log, candidates, alpha=args.alpha)
    logged = logged_value(log)
    if args.format == "json":
        # NaN (no estimate; see `note`) is not JSON: null instead.
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        logged_json = {k: v if math.isfinite(v) else None for k, v in logged.items()}
        print(json.dumps({"logged": logged_json, "estimates": records}, allow_nan=False))
    elif args.format == "csv":
        print(table.to_csv(index=False), end="")
    else:
        from simulations.output import markdown_table

        print(
            f"Logged policy: mean reward {logged['estimate']:.4f} "
            f"(se {logged['std_error']:.4f}) over {log.n} decisions, {log.n_arms} arms, "
            f"{log.n_segments} segment(s).\n"
        )
        print(markdown_table(table))
    return 0


def _where(frame: Any, conditions: list[str]) -> Any:
    """The rows matching every COLUMN=VALUE (compared as text, so replicate=0 works)."""
    for condition in conditions:
        column, sep, value = condition.partition("=")
        if not sep or not column:
            raise ScenarioError("where", f"{condition!r}: expected COLUMN=VALUE")
        if column not in frame.columns:
            raise ScenarioError("where", f"{condition!r}: the log has no {column!r} column")
        frame = frame[frame[column].astype(str) == value]
        if frame.empty:
            raise ScenarioError("where", f"no rows of the log match {condition!r}")
    return frame


def _single_logging_policy(frame: Any) -> Any:
    """Refuse to pool the decisions of several logging policies into one "logged policy"."""
    if "policy" in frame.columns:
        names = sorted(frame["policy"].astype(str).unique())
        if len(names) > 1:
            raise ScenarioError(
                "log",
                f"the log holds the decisions of {len(names)} logging policies ({names}); "
                "choose one with --where policy=NAME",
            )
    return frame


def _policy_spec(text: str, per_segment: bool) -> Any:
    from simulations.scenario import PolicySpec

    kind, _, params = text.partition(":")
    try:
        parsed = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            "policy", f"{text!r}: parameters must be a JSON object ({exc})"
        ) from None
    if not isinstance(parsed, dict):
        raise ScenarioError("policy", f"{text!r}: parameters must be a JSON object")
    return PolicySpec(name=text, kind=kind, params=parsed, per_segment=per_segment)
