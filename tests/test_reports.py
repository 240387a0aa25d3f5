"""The experiment report: the statistics engine's numbers, reproducible, and right in words."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.db import transaction, utcnow
from app.experiments import service as experiments
from app.reports.history import from_decision_log, write_history
from app.settings import get_settings
from app.stats.bayes import summarize
from app.stats.fixed_horizon import compare
from app.stats.sequential import asymptotic_cs
from app.stats.srm import srm_check_adaptive
from app.stats.sufficient import SampleStats
from simulations.engine import run_replicate
from simulations.scenario import scenario_from_dict
from tests.conftest import ADMIN, experiment_body
from tests.report_data import backdate, fixed_split

Create = Callable[..., dict[str, Any]]


def _sessions(client: TestClient) -> Any:
    return client.app.state.runtime.sessions  # type: ignore[attr-defined]


def _report(client: TestClient, key: str, **params: str) -> dict[str, Any]:
    response = client.get(f"/v1/experiments/{key}/report", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _ab(client: TestClient, create: Create, key: str, **analysis: Any) -> None:
    create(key, analysis=analysis) if analysis else create(key)


def test_report_numbers_are_the_statistics_engines(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment("ab")
    data = fixed_split(_sessions(client), "ab", means=[0.10, 0.12], n=6_000, seed=3)
    report = _report(client, "ab")
    arm, reward = data["arm"], data["reward"]
    stats = [SampleStats.from_values(reward[arm == a]) for a in (0, 1)]

    expected = compare(stats[0], stats[1], kind="binary")
    got = report["metrics"][0]["comparisons"][0]
    assert got["absolute"]["estimate"] == pytest.approx(expected.absolute.estimate, rel=1e-9)
    assert got["absolute"]["ci_low"] == pytest.approx(expected.absolute.ci_low, rel=1e-9)
    assert got["absolute"]["p_value"] == pytest.approx(expected.absolute.p_value, rel=1e-6)
    assert expected.relative is not None
    assert got["relative"]["estimate"] == pytest.approx(expected.relative.estimate, rel=1e-9)
    always = asymptotic_cs(stats[0], stats[1], planned_n=10_000, kind="binary")
    assert got["always_valid"]["ci_low"] == pytest.approx(always.ci_low, rel=1e-9)
    assert got["always_valid"]["ci_high"] == pytest.approx(always.ci_high, rel=1e-9)
    assert got["always_valid"]["p_value"] == pytest.approx(always.p_value, rel=1e-6, abs=1e-300)
    bayes = summarize(stats, kind="binary")
    for row, p in zip(report["metrics"][0]["bayes"], bayes.p_best, strict=True):
        assert row["p_best"] == pytest.approx(p, abs=1e-9)
    arms = report["metrics"][0]["arms"]
    assert [a["n"] for a in arms] == [s.n for s in stats]
    assert [a["mean"] for a in arms] == pytest.approx([s.mean for s in stats], rel=1e-12)
    counts = np.bincount(arm, minlength=2)
    assert [t["decisions"] for t in report["traffic"]] == counts.tolist()
    srm = srm_check_adaptive(counts, counts.sum() * np.array([0.5, 0.5]))
    assert report["srm"]["p_value"] == pytest.approx(srm.p_value, rel=1e-9)


def test_as_of_gives_the_same_report_twice_and_cuts_the_data(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment("ab")
    data = fixed_split(_sessions(client), "ab", means=[0.1, 0.1], n=3_000, seed=5)
    as_of = data["start"] + timedelta(hours=12)
    first = _report(client, "ab", as_of=as_of.isoformat())
    second = _report(client, "ab", as_of=as_of.isoformat())
    assert first == second
    # Closed decisions are those made a reward window (60 s) before as_of.
    closed_through = as_of - timedelta(seconds=60)
    with _sessions(client)() as session:
        experiment = experiments.get(session=session, key="ab")
        from sqlalchemy import func, select

        from app.decisions.models import Decision

        expected = session.scalar(
            select(func.count()).where(
                Decision.experiment_id == experiment.id, Decision.decided_at <= closed_through
            )
        )
    assert first["closed_decisions"] == expected
    assert 0 < first["closed_decisions"] < _report(client, "ab")["closed_decisions"]


def test_a_real_effect_ships_and_a_a_never_does(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment("effect")
    fixed_split(_sessions(client), "effect", means=[0.10, 0.13], n=20_000, seed=11)
    recommendation = _report(client, "effect")["recommendation"]
    assert recommendation["action"] == "ship"
    assert recommendation["arm"] == "treatment"
    for seed in range(6):
        key = f"aa{seed}"
        create_experiment(key, analysis={"planned_decisions": 10_000})
        fixed_split(_sessions(client), key, means=[0.1, 0.1], n=12_000, seed=100 + seed)
        action = _report(client, key)["recommendation"]["action"]
        assert action in ("keep_running", "no_difference"), (seed, action)


def test_a_skewed_split_is_flagged_as_sample_ratio_mismatch(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment("skew")
    fixed_split(_sessions(client), "skew", means=[0.1, 0.1], n=10_000, seed=2, served=[0.53, 0.47])
    report = _report(client, "skew")
    assert report["srm"]["mismatch"] is True
    assert report["recommendation"]["action"] == "investigate"
    assert "SRM" in report["recommendation"]["rule"]


def test_a_harmed_guardrail_is_investigated_and_corrected_for_multiplicity(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(
        "guard",
        analysis={
            "guardrails": [
                {"metric": "errors", "tolerance": 0.1},
                {"metric": "timeouts", "tolerance": 0.1},
            ]
        },
    )
    fixed_split(
        _sessions(client),
        "guard",
        means=[0.10, 0.13],
        n=20_000,
        seed=4,
        metrics={"errors": [0.02, 0.04], "timeouts": [0.01, 0.01]},
    )
    report = _report(client, "guard")
    errors, timeouts = report["metrics"][1], report["metrics"][2]
    assert errors["comparisons"][0]["harm"] is True
    assert timeouts["comparisons"][0]["harm"] is False
    # Holm over the two guardrails: the smaller p-value is doubled.
    ps = [m["comparisons"][0]["always_valid"]["p_value"] for m in (errors, timeouts)]
    adjusted = [m["comparisons"][0]["p_adjusted"] for m in (errors, timeouts)]
    assert min(adjusted) == pytest.approx(min(1.0, 2 * min(ps)))
    assert report["recommendation"] == {
        "action": "investigate",
        "arm": "treatment",
        "text": "Investigate: treatment harms guardrail errors.",
        "rule": report["recommendation"]["rule"],
    }


def test_group_sequential_looks_stop_at_the_first_crossing(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(
        "gs", analysis={"planned_decisions": 20_000, "group_sequential": {"looks": 4}}
    )
    fixed_split(_sessions(client), "gs", means=[0.10, 0.14], n=20_000, seed=8)
    (design,) = _report(client, "gs")["group_sequential"]
    decisions = [look["decision"] for look in design["looks"]]
    assert design["status"] == "reject"
    first = decisions.index("reject")
    assert all(d == "continue" for d in decisions[:first])
    assert all(d is None for d in decisions[first + 1 :])
    crossing = design["looks"][first]
    assert abs(crossing["z"]) >= crossing["upper"]


def test_bandit_ips_recovers_the_truth_where_naive_means_do_not(
    client: TestClient, create_experiment: Create
) -> None:
    # A drifting world served by Thompson sampling (floor 0.1): arm 0 is poor (0.2) for the
    # first quarter, then the best (0.8); the bandit moves 90% of traffic to it only once it
    # has learned that, so arm 0's naive mean over-weights its good period (0.75 against a
    # value of 0.65 over the rounds) and arm 1's its bad one. IPS reweights by propensity.
    scenario = scenario_from_dict(
        {
            "name": "drift",
            "horizon": 20_000,
            "update_interval": 1_000,
            "seed": 3,
            "environment": {
                "kind": "drift",
                "start_means": [0.2, 0.6],
                "end_means": [0.8, 0.2],
                "change_at": 5_000,
            },
            "policies": [{"type": "thompson", "params": {"min_probability": 0.1}}],
        }
    )
    result = run_replicate(scenario, scenario.policies[0], 0, keep_log=True)
    log = result.log
    assert log is not None
    create_experiment(
        "bandit",
        policy={"type": "thompson", "min_probability": 0.1},
        analysis={"planned_decisions": 20_000},
    )
    end = utcnow() - timedelta(minutes=5)
    start = end - timedelta(hours=20)
    decided = [start + timedelta(seconds=3.6 * i) for i in range(scenario.horizon)]
    backdate(_sessions(client), "bandit", start - timedelta(seconds=1))
    with transaction(_sessions(client)) as session:
        experiment = experiments.get(session=session, key="bandit")
        write_history(
            session=session,
            experiment=experiment,
            history=from_decision_log(
                arm=log.arm,
                probabilities=log.probabilities,
                reward=log.reward,
                decided_at=decided,
                update_interval=scenario.update_interval,
                metric="reward",
            ),
            id_prefix="bandit",
        )
    report = _report(client, "bandit")
    truth = log.expected.mean(axis=0)  # each arm's value over the rounds: 0.65, 0.3
    off = report["off_policy"]
    for a, row in enumerate(off["arms"]):
        assert row["ips_cs_low"] <= truth[a] <= row["ips_cs_high"], (a, row)
    assert all(row["naive_outside_cs"] for row in off["arms"])
    assert off["note"] is not None
    assert report["srm"]["mismatch"] is False  # expected counts from the logged allocations


def test_report_errors_are_problems(client: TestClient, create_experiment: Create) -> None:
    create_experiment("draft", start=False)
    response = client.get("/v1/experiments/draft/report", headers=ADMIN)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/experiments/nope/report", headers=ADMIN).status_code == 404
    assert client.get("/v1/experiments/draft/report").status_code == 401
    create_experiment("live")
    future = (utcnow() + timedelta(days=1)).isoformat()
    response = client.get("/v1/experiments/live/report", params={"as_of": future}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.as_of"
    response = client.get(
        "/v1/experiments/live/report", params={"as_of": "2026-01-01T00:00:00"}, headers=ADMIN
    )
    assert response.status_code == 422  # a time without its zone


def test_csv_has_one_row_per_metric_and_arm(client: TestClient, create_experiment: Create) -> None:
    create_experiment("csv", analysis={"secondary": [{"metric": "clicks"}]})
    fixed_split(
        _sessions(client), "csv", means=[0.1, 0.2], n=2_000, seed=1, metrics={"clicks": [0.3, 0.3]}
    )
    response = client.get("/v1/experiments/csv/report?format=csv", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    assert lines[0].startswith("metric,role,arm,n,mean")
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["reward", "primary", "control"],
        ["reward", "primary", "treatment"],
        ["clicks", "secondary", "control"],
        ["clicks", "secondary", "treatment"],
    ]


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"guardrails": [{"metric": "reward"}]}, "body.analysis.guardrails"),
        ({"guardrails": [{"metric": "e"}, {"metric": "e"}]}, "body.analysis.guardrails"),
        (
            {"guardrails": [{"metric": "e"}], "secondary": [{"metric": "e"}]},
            "body.analysis.secondary",
        ),
        ({"alpha": 0.5}, "body.analysis.alpha"),
        ({"planned_decisions": 10}, "body.analysis.planned_decisions"),
        ({"group_sequential": {"looks": 1}}, "body.analysis.group_sequential.looks"),
        ({"surprise": 1}, "body.analysis.surprise"),
    ],
)
def test_a_bad_analysis_plan_is_refused_naming_the_field(
    client: TestClient, analysis: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/v1/experiments", json=experiment_body("bad", analysis=analysis), headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_the_analysis_plan_is_fixed_once_live(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment("plan")
    response = client.patch(
        "/v1/experiments/plan", json={"analysis": {"alpha": 0.1}}, headers=ADMIN
    )
    assert response.status_code == 409
    assert "analysis" in response.json()["detail"]


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The command line's settings read this test's database (they are cached per process)."""
    monkeypatch.setenv("CROUPIER_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def test_cli_report_formats(
    client: TestClient,
    create_experiment: Create,
    cli_database: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_experiment("cli")
    fixed_split(_sessions(client), "cli", means=[0.1, 0.15], n=4_000, seed=9)
    assert main(["report", "cli", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["experiment"]["key"] == "cli"
    assert main(["report", "cli"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("# Ranking model v2 vs v1 (`cli`)")
    assert data["recommendation"]["text"] in markdown
    assert main(["report", "cli", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>")
    assert "<script" not in page
    assert "http" not in page  # self-contained
    assert main(["report", "cli", "--as-of", "2026-01-01T00:00:00"]) == 2
    assert main(["report", "nope"]) == 1


def test_cli_export_formats(
    client: TestClient,
    create_experiment: Create,
    cli_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_experiment("cli")
    fixed_split(_sessions(client), "cli", means=[0.1, 0.15], n=500, seed=9)
    later = (utcnow() + timedelta(days=1)).isoformat()  # every decision closed by then
    for fmt in ("dsjson", "csv", "parquet"):
        out = tmp_path / f"log.{fmt}"
        assert main(["export", "cli", "--format", fmt, "--out", str(out), "--as-of", later]) == 0
        assert f"exported 500 decisions ({fmt})" in capsys.readouterr().err
    events = [json.loads(line) for line in (tmp_path / "log.dsjson").read_text().splitlines()]
    assert len(events) == 500
    assert {e["_label_cost"] for e in events} <= {0.0, -1.0}
    frame = pd.read_parquet(tmp_path / "log.parquet")
    assert len(frame) == len(pd.read_csv(tmp_path / "log.csv")) == 500
    assert main(["export", "cli", "--as-of", "yesterday"]) == 2
    assert main(["export", "nope", "--out", str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()


def test_as_of_in_the_report_is_the_one_asked(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment("t")
    fixed_split(_sessions(client), "t", means=[0.1, 0.1], n=500, seed=1)
    as_of = (utcnow() - timedelta(minutes=1)).replace(microsecond=0)
    report = _report(client, "t", as_of=as_of.isoformat())
    assert datetime.fromisoformat(report["as_of"]) == as_of


def test_primary_comparisons_are_holm_adjusted_over_treatments(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(
        "three",
        variants=[
            {"key": "control", "is_control": True},
            {"key": "b"},
            {"key": "c"},
        ],
    )
    fixed_split(_sessions(client), "three", means=[0.10, 0.10, 0.14], n=30_000, seed=21)
    report = _report(client, "three")
    comparisons = report["metrics"][0]["comparisons"]
    raw = [c["always_valid"]["p_value"] for c in comparisons]
    ordered = sorted(raw)
    holm = [min(1.0, 2 * ordered[0]), min(1.0, max(2 * ordered[0], ordered[1]))]
    assert sorted(c["p_adjusted"] for c in comparisons) == pytest.approx(holm)
    assert report["recommendation"]["arm"] == "c"


@pytest.mark.parametrize("aggregation", ["earliest", "sum"])
def test_report_values_are_the_learners_with_repeats_late_and_unseen_outcomes(
    client: TestClient, create_experiment: Create, aggregation: str
) -> None:
    # Several outcomes per decision (earliest or sum), late ones (never counted) and ones
    # received after as_of (not yet known then): the report's one-pass SQL must count exactly
    # what the learner's per-decision lookup counts.
    from sqlalchemy import insert

    from app.learning import service as learning
    from app.outcomes.models import Outcome

    create_experiment("agg", reward_aggregation=aggregation)
    data = fixed_split(_sessions(client), "agg", means=[0.3, 0.5], n=2_000, seed=12)
    rng = np.random.default_rng(0)
    as_of = utcnow() - timedelta(minutes=1)
    with transaction(_sessions(client)) as session:
        experiment = experiments.get(session=session, key="agg")
        start = data["start"]
        rows = []
        for i in rng.choice(2_000, size=600, replace=False):
            at = start + timedelta(seconds=float(rng.uniform(0, 3600)))
            rows.append(
                {
                    "decision_id": f"agg-{i}",
                    "experiment_id": experiment.id,
                    "metric": "reward",
                    "value": float(rng.choice([0.0, 1.0])),
                    "occurred_at": at,
                    "received_at": rng.choice([at, utcnow() + timedelta(hours=1)]),
                    "late": bool(rng.random() < 0.3),
                    "dedup_key": f"extra-{i}",
                }
            )
        session.execute(insert(Outcome), rows)
    report = _report(client, "agg", as_of=as_of.isoformat())
    with _sessions(client)() as session:
        experiment = experiments.get(session=session, key="agg")
        # The learner counts outcomes whenever they arrived; restrict to those received by
        # as_of the way the report does, by counting at as_of on a copy without the future.
        closed_through = as_of - timedelta(seconds=experiment.reward_window_s)
        from sqlalchemy import delete

        session.execute(delete(Outcome).where(Outcome.received_at > as_of))
        stats = learning.aggregate(
            session=session, experiment=experiment, after=None, through=closed_through
        )
        session.rollback()
    arms = report["metrics"][0]["arms"]
    assert [a["n"] for a in arms] == [s.count for s in stats]
    assert [a["mean"] for a in arms] == pytest.approx([s.mean for s in stats], rel=1e-12)


def _same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats within rounding (sums added in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_hourly_rollups_give_the_same_report_at_any_as_of(
    client: TestClient, create_experiment: Create
) -> None:
    from sqlalchemy import func, select

    from app.learning.runner import roll_up_reports
    from app.reports.models import MetricRollup, RollupMark, TrafficRollup

    create_experiment(
        "rolled",
        policy={"type": "fixed"},
        analysis={"guardrails": [{"metric": "errors", "missing": "skip"}]},
    )
    data = fixed_split(
        _sessions(client),
        "rolled",
        means=[0.1, 0.12],
        n=12_000,
        seed=31,
        hours=72,
        metrics={"errors": [0.05, 0.05]},
    )
    now = utcnow()
    earlier = (data["start"] + timedelta(hours=30)).isoformat()
    raw_now = _report(client, "rolled", as_of=now.isoformat())
    raw_earlier = _report(client, "rolled", as_of=earlier)
    assert raw_now["period_s"] % 3600 == 0  # hour-aligned periods, where rollups apply

    roll_up_reports(sessions=_sessions(client), now=now)  # what the learner does each pass
    with _sessions(client)() as session:
        assert session.scalar(select(func.count()).select_from(MetricRollup)) > 100
        assert session.scalar(select(func.count()).select_from(TrafficRollup)) > 50
        marks = {m.metric: m for m in session.scalars(select(RollupMark))}
    assert set(marks) == {"", "reward", "errors"}
    assert marks["errors"].missing is None
    assert marks["reward"].missing == 0.0

    _same(_report(client, "rolled", as_of=now.isoformat()), raw_now)
    _same(_report(client, "rolled", as_of=earlier), raw_earlier)
    # A second pass finds nothing new to roll up.
    roll_up_reports(sessions=_sessions(client), now=now)
    with _sessions(client)() as session:
        again = {m.metric: m.through_hour for m in session.scalars(select(RollupMark))}
    assert again == {k: m.through_hour for k, m in marks.items()}
    # The rolled-up hours are really read from the rollups: without their raw rows the report
    # is unchanged.
    from sqlalchemy import delete

    from app.decisions.models import Decision
    from app.outcomes.models import Outcome
    from app.reports.rollups import hour_start

    cut = hour_start(min(m.through_hour for m in marks.values()))
    with transaction(_sessions(client)) as session:
        old = select(Decision.id).where(Decision.decided_at < cut).scalar_subquery()
        session.execute(delete(Outcome).where(Outcome.decision_id.in_(old)))
        gone = session.execute(delete(Decision).where(Decision.decided_at < cut)).rowcount
    assert gone > 10_000
    _same(_report(client, "rolled", as_of=now.isoformat()), raw_now)


def test_time_buckets_are_exact_at_hour_boundaries(engine: Any) -> None:
    # Rollups cut hours by comparing timestamps; the SQL bucket must agree to the microsecond.
    from sqlalchemy import literal, select

    from app.db import UTCDateTime, epoch_seconds

    hour = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    for offset_us in (-400, -1, 0, 1, 400, 999_999):
        at = hour + timedelta(microseconds=offset_us)
        with engine.connect() as conn:
            seconds = conn.execute(select(epoch_seconds(literal(at, UTCDateTime)))).scalar_one()
        assert int(float(seconds) // 3600) == int(at.timestamp() // 3600), offset_us


def test_series_padding_and_binary_detection_do_not_depend_on_the_split() -> None:
    from app.reports import queries
    from app.reports.service import _cut, _kind, _Metric

    padded = _cut(
        {"decisions": {"a": [3]}, "primary_n": {"a": [5]}, "lift": {"b": [0.1]}, "srm": [0.5]}, 3
    )
    assert padded == {
        "decisions": {"a": [3, 0, 0]},  # no decisions in the empty periods
        "primary_n": {"a": [5, 5, 5]},  # cumulative
        "lift": {"b": [0.1, None, None]},
        "srm": [0.5, None, None],
    }

    def cell(values: list[float]) -> queries.MetricCell:
        y = np.array(values)
        return queries.MetricCell(
            0, 0, y.size, y.sum(), (y * y).sum(), 0, 0, 0, 0, y.min(), y.max()
        )

    # One 2 and eight 0.5: sum = sum of squares = 6, yet not 0/1 values.
    odd = _Metric(None, "m", "primary", None, [cell([2.0] + [0.5] * 8)])
    assert _kind(odd) == "continuous"
    zero_one = _Metric(None, "m", "primary", None, [cell([0, 1, 1]), cell([0.0])])
    assert _kind(zero_one) == "binary"


def test_when_the_plan_is_complete_a_worse_treatment_keeps_the_control(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(
        "worse",
        variants=[{"key": "control", "is_control": True}, {"key": "b"}, {"key": "c"}],
        analysis={"planned_decisions": 10_000},
    )
    fixed_split(_sessions(client), "worse", means=[0.15, 0.10, 0.15], n=30_000, seed=5)
    recommendation = _report(client, "worse")["recommendation"]
    assert recommendation["action"] == "ship"
    assert recommendation["arm"] == "control"
    assert "b is worse" in recommendation["text"]
