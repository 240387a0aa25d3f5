"""docs/contextual.md's walkthrough runs against the real server: a contextual experiment
learns per segment, version 2 is a trained model, `croupier export` writes DSJson and
`croupier evaluate` prints the counterfactual table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, Server

pytestmark = pytest.mark.slow
ADMIN_KEY = "e2e-contextual-admin-key-0123456789"


def walkthrough_script() -> str:
    doc = (ROOT / "docs" / "contextual.md").read_text()
    section = doc.split("<!-- contextual-walkthrough:start -->", 1)[1]
    section = section.split("<!-- contextual-walkthrough:end -->")[0]
    return "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S))


def test_contextual_walkthrough_runs(tmp_path: Path) -> None:
    env = {
        "CROUPIER_DATABASE_URL": f"sqlite:///{tmp_path / 'croupier.db'}",
        "CROUPIER_ADMIN_KEY": ADMIN_KEY,
        "CROUPIER_LEARNER_TICK_S": "0.5",
        "CROUPIER_LEARNER_SAFETY_LAG_S": "1",
        "CROUPIER_POLICY_CHECK_INTERVAL_S": "0.2",
    }
    server = Server(env, tmp_path / "server.log")
    try:
        bin_dir = str(Path(sys.executable).parent)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
            env={
                **os.environ,
                **env,
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "CROUPIER_KEY": ADMIN_KEY,
                "CROUPIER_URL": server.url,
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr + server.output()
    finally:
        server.stop()
    out = result.stdout
    decoder = json.JSONDecoder()
    listed, end = decoder.raw_decode(out, out.index('[{"number":1,'))
    answer, _ = decoder.raw_decode(out, out.index("{", end))
    latest = listed[-1]
    assert latest["model_bytes"] > 0
    assert latest["details"]["model"]["examples"] == 300
    assert sum(v["details"]["model"].get("new_examples", 0) for v in listed) == 300
    assert answer["policy_version"] == latest["number"]
    exported = (tmp_path / "ranker-ctx.json").read_text().splitlines()
    assert len(exported) == 301  # the 300 and step 3's decision, all closed by then
    assert json.loads(exported[0])["c"]["user"]
    assert "| greedy | dr |" in out
    assert "| logged | on-policy |" in out
