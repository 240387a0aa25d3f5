"""The analyst notebooks (notebooks/*.ipynb) run top to bottom against a demo database.

Each notebook is executed by a real Jupyter kernel (nbclient), which inherits this process's
environment: CROUPIER_DATABASE_URL points it at a fresh SQLite file filled by `seed_demo`, and
CROUPIER_NOTEBOOK_REPLICATES keeps the simulation notebook short. A cell that raises fails the
test (nbclient raises CellExecutionError with the cell and its traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import ipykernel  # noqa: F401 - the kernel the notebooks run on must be installed
import nbclient
import nbformat
import pytest

from app import migrate
from app.db import make_engine, make_session_factory
from app.demo import seed_demo
from app.experiments import service as experiments
from app.reports.service import build_report

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("report_walkthrough", "feedback_loop", "off_policy_evaluation")
PROBE = "import sys\nprint('kernel-executable:', sys.executable)"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('notebooks') / 'croupier.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        assert seed_demo(make_session_factory(engine)) == ["demo-ab", "demo-bandit"]
    finally:
        engine.dispose()
    return url


def _execute(name: str, url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CROUPIER_DATABASE_URL", url)
    monkeypatch.setenv("CROUPIER_NOTEBOOK_REPLICATES", "30")
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()
    return notebook


def _text(notebook: Any) -> str:
    """Every text output: printed streams and the text/plain of results."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                parts.append(output["text"])
            elif "data" in output:
                parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


def _images(notebook: Any) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def _check_kernel(notebook: Any) -> None:
    # The kernel ran this interpreter (the project's venv), with the package importable.
    assert f"kernel-executable: {sys.executable}" in _text(notebook)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_have_no_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: clear the outputs before committing"
            assert cell.execution_count is None


def test_report_walkthrough(demo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _execute("report_walkthrough", demo_url, monkeypatch)
    _check_kernel(notebook)
    engine = make_engine(demo_url)
    try:
        with make_session_factory(engine)() as session:
            experiment = experiments.get(session=session, key="demo-ab")
            report = build_report(session=session, experiment=experiment, as_of=None)
    finally:
        engine.dispose()
    text = _text(notebook)
    assert report.recommendation.text in text
    assert "part of day (UTC)" in text  # the segmentation table
    assert "p_model-v2" in text  # the raw log
    assert _images(notebook) == 1  # the series plot


def test_feedback_loop(demo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _execute("feedback_loop", demo_url, monkeypatch)
    _check_kernel(notebook)
    text = _text(notebook)
    assert "90 runs in" in text  # 3 policies x 30 replicates: the environment was read
    assert "locked_on_wrong_arm" in text
    assert "ips_bias" in text
    assert _images(notebook) == 1  # the allocation figure


def test_off_policy_evaluation(demo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _execute("off_policy_evaluation", demo_url, monkeypatch)
    _check_kernel(notebook)
    text = _text(notebook)
    for candidate in ("uniform", "always arm 2", "thompson (floor 0.05)", "epsilon-greedy 0.1"):
        assert candidate in text
    assert "replay ips estimate" in text  # the comparison with the report's section
