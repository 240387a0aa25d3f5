"""The report's other faces: the per-arm CSV table, markdown and a self-contained HTML page."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from typing import Any

from app.reports.schemas import Report

ARM_COLUMNS = (
    "metric",
    "role",
    "arm",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "cs_low",
    "cs_high",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "p_value",
    "lift_cs_low",
    "lift_cs_high",
    "p_value_always_valid",
    "p_adjusted",
    "relative_lift",
    "p_best",
    "chance_to_beat_control",
    "expected_loss",
)


def arm_rows(report: Report) -> list[dict[str, Any]]:
    """One row per (metric, arm): the arm's summary and, for treatments, the comparison."""
    rows = []
    for m in report.metrics:
        comparisons = {c.arm: c for c in m.comparisons}
        bayes = {b.arm: b for b in m.bayes or []}
        for a in m.arms:
            c = comparisons.get(a.arm)
            b = bayes.get(a.arm)
            rows.append(
                {
                    "metric": m.metric,
                    "role": m.role,
                    "arm": a.arm,
                    "n": a.n,
                    "mean": a.mean,
                    "ci_low": a.ci_low,
                    "ci_high": a.ci_high,
                    "cs_low": a.cs_low,
                    "cs_high": a.cs_high,
                    "lift": c.absolute.estimate if c else None,
                    "lift_ci_low": c.absolute.ci_low if c else None,
                    "lift_ci_high": c.absolute.ci_high if c else None,
                    "p_value": c.absolute.p_value if c else None,
                    "lift_cs_low": c.always_valid.ci_low if c else None,
                    "lift_cs_high": c.always_valid.ci_high if c else None,
                    "p_value_always_valid": c.always_valid.p_value if c else None,
                    "p_adjusted": c.p_adjusted if c else None,
                    "relative_lift": c.relative.estimate if c and c.relative else None,
                    "p_best": b.p_best if b else None,
                    "chance_to_beat_control": b.chance_to_beat_control if b else None,
                    "expected_loss": b.expected_loss if b else None,
                }
            )
    return rows


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ARM_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in arm_rows(report):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    e = report.experiment
    r = report.recommendation
    parts = [
        f"# {e.name} (`{e.key}`)",
        "",
        f"**{r.text}**  ",
        f"Rule: {r.rule}.",
        "",
        f"Status {e.status}; policy {e.policy_type} (version {report.policy.current_version}); "
        f"as of {report.as_of.isoformat()}; {report.decisions:,} decisions, "
        f"{report.closed_decisions:,} closed (reward window {e.reward_window_s:g} s).",
        "",
        "## Traffic",
        "",
        _table(
            ["arm", "decisions", "share", "expected share"],
            [(t.arm, t.decisions, t.share, t.expected_share) for t in report.traffic],
        ),
    ]
    if report.srm is not None:
        parts += [
            "",
            f"SRM: p = {_fmt(report.srm.p_value)}{' — MISMATCH' if report.srm.mismatch else ''}.",
        ]
    for m in report.metrics:
        parts += ["", f"## {m.metric} ({m.role}, {m.kind or 'no data'})", ""]
        parts.append(
            _table(
                ["arm", "n", "mean", "CI", "always-valid CI"],
                [
                    (
                        a.arm,
                        a.n,
                        a.mean,
                        f"{_fmt(a.ci_low)} … {_fmt(a.ci_high)}",
                        f"{_fmt(a.cs_low)} … {_fmt(a.cs_high)}",
                    )
                    for a in m.arms
                ],
            )
        )
        if m.comparisons:
            parts += [
                "",
                _table(
                    [
                        "vs control",
                        "lift",
                        "p",
                        "always-valid lift",
                        "p (always-valid)",
                        "p adjusted",
                        "significant",
                        "harm",
                    ],
                    [
                        (
                            c.arm,
                            c.absolute.estimate,
                            c.absolute.p_value,
                            f"{_fmt(c.always_valid.ci_low)} … {_fmt(c.always_valid.ci_high)}",
                            c.always_valid.p_value,
                            c.p_adjusted,
                            c.significant,
                            c.harm,
                        )
                        for c in m.comparisons
                    ],
                ),
            ]
        if m.bayes:
            parts += [
                "",
                _table(
                    ["arm", "P(best)", "chance to beat control", "expected loss"],
                    [(b.arm, b.p_best, b.chance_to_beat_control, b.expected_loss) for b in m.bayes],
                ),
            ]
        if m.error:
            parts += ["", f"Note: {m.error}"]
    if report.off_policy is not None:
        o = report.off_policy
        parts += ["", f"## Off-policy estimates ({o.metric})", ""]
        parts.append(
            _table(
                ["arm", "naive mean", "IPS", "IPS always-valid", "SNIPS", "ESS"],
                [
                    (
                        a.arm,
                        a.naive_mean,
                        a.ips,
                        f"{_fmt(a.ips_cs_low)} … {_fmt(a.ips_cs_high)}",
                        a.snips,
                        a.effective_sample_size,
                    )
                    for a in o.arms
                ],
            )
        )
        if o.note:
            parts += ["", o.note]
    for g in report.group_sequential or []:
        parts += ["", f"## Group-sequential looks: {g.arm} ({g.spending}): {g.status}", ""]
        parts.append(
            _table(
                ["look", "fraction", "reached", "z", "boundary", "decision"],
                [
                    (x.look, x.information_fraction, x.reached_at, x.z, x.upper, x.decision)
                    for x in g.looks
                ],
            )
        )
    return "\n".join(parts) + "\n"


def to_html(report: Report) -> str:
    """A self-contained page (no scripts, no external resources): the markdown's tables."""
    body = []
    in_table = False
    for line in to_markdown(report).splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            text = html.escape(line.strip().rstrip()).replace("**", "")
            body.append(f"<p>{text}</p>")
    if in_table:
        body.append("</table>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;"
        "padding:.25rem .5rem;text-align:right}th{background:#f4f4f4}"
    )
    title = html.escape(report.experiment.name)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
