"""The raw decision log (`app.reports.logs.decisions_frame`): the report's rows, one by one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.db import transaction, utcnow
from app.experiments import service as experiments
from app.reports.history import History, write_history
from app.reports.logs import BASE_COLUMNS, decisions_frame
from app.reports.service import build_report
from simulations.replay import evaluate, log_from_frame, standard_candidates
from tests.report_data import backdate, fixed_split

Create = Callable[..., dict[str, Any]]
ANALYSIS = {
    "guardrails": [{"metric": "error", "tolerance": 0.1}],
    "secondary": [{"metric": "upsell", "missing": "skip", "higher_is_better": True}],
}


def _sessions(client: TestClient) -> Any:
    return client.app.state.runtime.sessions  # type: ignore[attr-defined]


def _seed(client: TestClient, create: Create, n: int = 3_000) -> dict[str, Any]:
    create("ab", analysis=ANALYSIS)
    return fixed_split(
        _sessions(client),
        "ab",
        means=[0.10, 0.14],
        n=n,
        seed=21,
        metrics={"error": [0.02, 0.03], "upsell": [0.3, 0.4]},
    )


def test_one_row_per_decision_with_the_reports_values(
    client: TestClient, create_experiment: Create
) -> None:
    data = _seed(client, create_experiment)
    with _sessions(client)() as session:
        experiment = experiments.get(session=session, key="ab")
        frame = decisions_frame(session=session, experiment=experiment)
        report = build_report(session=session, experiment=experiment, as_of=None)
        by_metric = {
            m.metric: decisions_frame(session=session, experiment=experiment, metric=m.metric)
            for m in report.metrics[1:]
        }

    assert list(frame.columns) == [*BASE_COLUMNS, "p_control", "p_treatment"]
    assert len(frame) == report.decisions == 3_000
    assert frame["decision_id"].is_unique
    assert frame["decided_at"].is_monotonic_increasing
    assert str(frame["decided_at"].dt.tz) == "UTC"
    np.testing.assert_array_equal(frame["arm"].to_numpy(), data["arm"])
    np.testing.assert_array_equal(frame["value"].to_numpy(), data["reward"])  # default reward 0
    assert (frame["variant"] == np.array(["control", "treatment"])[data["arm"]]).all()
    assert frame["closed"].all()  # the history ends 5 minutes ago; the window is 60 s
    pd.testing.assert_series_equal(frame["reward"], frame["value"], check_names=False)

    for m in report.metrics:
        rows = frame if m.role == "primary" else by_metric[m.metric]
        closed = rows[rows["closed"]].groupby("arm")["value"].agg(["count", "mean"])
        assert closed["count"].tolist() == [a.n for a in m.arms], m.metric
        assert closed["mean"].tolist() == pytest.approx([a.mean for a in m.arms], rel=1e-12)
    # "error" counts a missing outcome as 0; "upsell" (missing = "skip") leaves it out.
    assert not by_metric["error"]["value"].isna().any()
    upsell = by_metric["upsell"]["value"]
    assert upsell.isna().sum() == (data["extra"]["upsell"] == 0).sum()
    assert (upsell.dropna() == 1.0).all()
    # An unplanned metric: no outcomes, so every value is NaN.
    with _sessions(client)() as session:
        experiment = experiments.get(session=session, key="ab")
        other = decisions_frame(session=session, experiment=experiment, metric="nothing")
    assert len(other) == 3_000
    assert other["value"].isna().all()


def test_as_of_cuts_decisions_and_closes_by_the_reward_window(
    client: TestClient, create_experiment: Create
) -> None:
    data = _seed(client, create_experiment)
    as_of = data["start"] + timedelta(hours=12)
    with _sessions(client)() as session:
        experiment = experiments.get(session=session, key="ab")
        frame = decisions_frame(session=session, experiment=experiment, as_of=as_of)
        report = build_report(session=session, experiment=experiment, as_of=as_of)
        everything = decisions_frame(session=session, experiment=experiment)

    assert len(frame) == report.decisions
    assert (frame["decided_at"] <= as_of).all()
    assert len(frame) == (everything["decided_at"] <= as_of).sum()
    assert 0 < len(frame) < len(everything)
    closed_through = as_of - timedelta(seconds=60)
    assert (frame["closed"] == (frame["decided_at"] <= closed_through)).all()
    assert (~frame["closed"]).sum() > 0  # some decisions are still inside the window
    assert int(frame["closed"].sum()) == report.closed_decisions
    assert frame.loc[~frame["closed"], "reward"].isna().all()
    assert frame.loc[~frame["closed"], "value"].notna().all()  # provisional values
    closed = frame[frame["closed"]].groupby("arm")["value"].agg(["count", "mean"])
    assert closed["count"].tolist() == [a.n for a in report.metrics[0].arms]
    assert closed["mean"].tolist() == pytest.approx(
        [a.mean for a in report.metrics[0].arms], rel=1e-12
    )


def test_probability_columns_are_the_logged_vectors_and_replay_reads_the_frame(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment(
        "bandit",
        variants=[{"key": k, "payload": {}, "is_control": k == "a"} for k in ("a", "b", "c")],
        policy={"type": "thompson"},
    )
    sessions = _sessions(client)
    n = 900
    rng = np.random.default_rng(4)
    vectors = rng.dirichlet([2.0, 2.0, 2.0], size=n)
    arm = np.array([rng.choice(3, p=v) for v in vectors])
    reward = (rng.random(n) < np.array([0.2, 0.3, 0.4])[arm]).astype(float)
    end = utcnow() - timedelta(minutes=5)
    start = end - timedelta(hours=6)
    backdate(sessions, "bandit", start - timedelta(seconds=1))
    with transaction(sessions) as session:
        experiment = experiments.get(session=session, key="bandit")
        write_history(
            session=session,
            experiment=experiment,
            history=History(
                decided_at=[start + timedelta(seconds=20.0 * i) for i in range(n)],
                arm=arm,
                probabilities=vectors,
                version=np.ones(n, dtype=np.intp),
                outcomes={"reward": np.where(reward > 0, 1.0, np.nan)},
                versions={},
            ),
            id_prefix="bandit",
        )
    with sessions() as session:
        experiment = experiments.get(session=session, key="bandit")
        frame = decisions_frame(session=session, experiment=experiment)

    p = frame[["p_a", "p_b", "p_c"]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p, vectors, rtol=1e-12)
    np.testing.assert_allclose(frame["propensity"], vectors[np.arange(n), arm], rtol=1e-12)
    log = log_from_frame(frame[frame["closed"]], arms=["a", "b", "c"])
    assert log.n == n
    assert log.n_arms == 3
    np.testing.assert_array_equal(log.reward, reward)
    table = evaluate(log, standard_candidates(log))
    assert set(table["candidate"]) == {"uniform", "always arm 0", "always arm 1", "always arm 2"}


def test_no_decisions_gives_an_empty_frame_with_the_columns(
    client: TestClient, create_experiment: Create
) -> None:
    create_experiment("empty")
    with _sessions(client)() as session:
        experiment = experiments.get(session=session, key="empty")
        frame = decisions_frame(session=session, experiment=experiment)
    assert frame.empty
    assert list(frame.columns) == [*BASE_COLUMNS, "p_control", "p_treatment"]
