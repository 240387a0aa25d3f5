"""A newcomer's first start: migrations run, an admin key is printed once, and the README's
curl walkthrough works against the real server."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ROOT, Server

pytestmark = pytest.mark.slow


def walkthrough_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->")[0]
    return "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S))


def test_first_start_prints_an_admin_key_and_the_walkthrough_runs(tmp_path: Path) -> None:
    database = tmp_path / "croupier.db"
    env = {
        "CROUPIER_DATABASE_URL": f"sqlite:///{database}",
        "CROUPIER_LEARNER_TICK_S": "0.5",
        "CROUPIER_LEARNER_SAFETY_LAG_S": "1",
        "CROUPIER_DEMO": "true",  # what `make run` does on an empty database
    }
    server = Server(env, tmp_path / "server.log")
    try:
        keys = re.findall(r"crp_[0-9a-f]+_[A-Za-z0-9_\-]+", server.output())
        assert len(set(keys)) == 1, server.output()
        key = keys[0]
        assert "curl -H" in server.output()
        auth = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{server.url}/v1/experiments", headers=auth)
        assert listed.status_code == 200
        # A newcomer finds labelled demo experiments with real reports.
        assert "created the demo experiments demo-ab, demo-bandit" in server.output()
        assert {e["key"] for e in listed.json()["items"]} == {"demo-ab", "demo-bandit"}
        report = httpx.get(f"{server.url}/v1/experiments/demo-ab/report", headers=auth)
        assert report.status_code == 200
        assert report.json()["recommendation"]["action"] == "ship"
        script = walkthrough_script()
        assert "curl" in script
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**os.environ, "CROUPIER_KEY": key, "CROUPIER_URL": server.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "policy_version" in result.stdout
        assert '"action":"keep_running"' in result.stdout  # step 6: the report
        assert "metric,role,arm,n,mean" in result.stdout
    finally:
        server.stop()
    # A second start finds the key and prints none.
    again = Server(env, tmp_path / "server2.log")
    try:
        assert "crp_" not in again.output()
        assert "demo" not in again.output()
    finally:
        again.stop()
