"""Live mode: a real server, driven over HTTP, serves what the in-process simulation serves."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from simulations.engine import run
from simulations.environments import StationaryArms
from simulations.live import compare, format_comparison, run_live
from simulations.scenario import PolicySpec, Scenario
from tests.conftest import ADMIN_KEY
from tests.e2e.server import Server

pytestmark = pytest.mark.slow


def scenario() -> Scenario:
    return Scenario(
        name="live-bernoulli",
        environment=StationaryArms([0.2, 0.5, 0.8]),
        policies=(PolicySpec("thompson", "thompson", {"min_probability": 0.01}),),
        horizon=1500,
        update_interval=300,
        replicates=51,  # replicate 0 is the live run's twin; 50 others
        seed=2026,
        salt="live-test",
        uniforms="hash",
    )


def test_service_and_simulation_agree(tmp_path: Path) -> None:
    started = time.monotonic()
    server = Server(
        {
            "CROUPIER_DATABASE_URL": f"sqlite:///{tmp_path / 'croupier.db'}",
            "CROUPIER_ADMIN_KEY": ADMIN_KEY,
            "CROUPIER_LEARNER_TICK_S": "0.1",
            "CROUPIER_LEARNER_SAFETY_LAG_S": "0.4",
            "CROUPIER_POLICY_CHECK_INTERVAL_S": "0.1",
        },
        tmp_path / "server.log",
    )
    try:
        live = run_live(
            scenario(),
            base_url=server.url,
            api_key=ADMIN_KEY,
            replicate=0,
            reward_window_s=0.5,
            policy_check_s=0.3,
            id_prefix="live-test",  # a fresh database: a fixed prefix makes the run reproducible
        )
        # A second run of the same replicate against the same database gets fresh decision
        # ids (the service refuses stored ones) and is served in full.
        again = run_live(
            scenario(), base_url=server.url, api_key=ADMIN_KEY, replicate=0, policy_check_s=0.3
        )
        assert again.id_prefix != live.id_prefix
        assert again.outcome_counts == {"accepted": 1500}
        assert compare(again, run(scenario(), workers=1, keep_log=True)).identical_decisions == 1500
    finally:
        server.stop()
    offline = run(scenario(), workers=2, keep_log=True)
    comparison = compare(live, offline)
    print(format_comparison(comparison), f"\nlive {live.seconds:.1f}s")

    # The service behaved like the simulation's learner: one version per block, served at once.
    assert live.block_versions == [(v,) for v in range(1, 6)]
    assert live.stale_decisions == live.split_updates == live.non_experimental == 0
    assert live.outcome_counts == {"accepted": 1500}
    assert live.outcome_mismatches == 0
    # Every logged propensity is the served vector's entry for the served arm, exactly.
    assert live.propensity_mismatches == 0
    vectors = np.array([live.versions[int(v)] for v in live.served_version])
    assert np.array_equal(vectors[np.arange(live.arms.size), live.arms], live.propensity)

    # Same initial state, same hash: the first block is identical decision for decision.
    assert comparison.first_block_identical is True
    # ...and, the service's learner updating once per block as the simulation's does, so is
    # every later block.
    assert comparison.identical_decisions == 1500
    assert comparison.allocation_max_abs_diff == 0.0
    assert comparison.agree, format_comparison(comparison)
    assert time.monotonic() - started < 60
