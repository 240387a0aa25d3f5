"""The demo data `croupier serve` creates on an empty database."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_session_factory
from app.demo import seed_demo
from app.experiments import service as experiments
from app.reports.service import build_report


def _sessions(url: str) -> sessionmaker[Session]:
    return make_session_factory(make_engine(url))


def test_an_empty_database_gets_labelled_demo_experiments_once(database_url: str) -> None:
    sessions = _sessions(database_url)
    assert seed_demo(sessions) == ["demo-ab", "demo-bandit"]
    assert seed_demo(sessions) == []  # never twice, never into a database in use
    with sessions() as session:
        ab = experiments.get(session=session, key="demo-ab")
        bandit = experiments.get(session=session, key="demo-bandit")
        assert ab.name.startswith("DEMO (simulated data)")
        assert bandit.name.startswith("DEMO (simulated data)")
        ab_report = build_report(session=session, experiment=ab, as_of=None)
        bandit_report = build_report(session=session, experiment=bandit, as_of=None)
    # Three days of traffic, every decision closed an hour later, and a real effect to see.
    assert ab_report.closed_decisions > 20_000
    assert ab_report.recommendation.action == "ship"
    assert ab_report.recommendation.arm == "model-v2"
    assert ab_report.srm is not None
    assert not ab_report.srm.mismatch
    assert bandit_report.off_policy is not None
    assert bandit_report.policy.versions > 50
    assert len(bandit_report.series.period_ends) > 10


def test_the_demo_is_not_created_when_experiments_exist(
    database_url: str, create_experiment: object
) -> None:
    create_experiment("mine")  # type: ignore[operator]
    assert seed_demo(_sessions(database_url)) == []
