"""The dashboard in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium):
log in through the form, open the list and an experiment page, no console errors, the four SVG
plots are drawn, and a screenshot is saved (CROUPIER_SCREENSHOT_DIR, default: pytest's tmp dir).

Skipped when Chromium or Playwright is missing, unless CROUPIER_REQUIRE_BROWSER is set (CI sets
it, so CI fails instead of skipping).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from app.db import make_engine, make_session_factory
from tests.conftest import ADMIN, ADMIN_KEY, experiment_body
from tests.e2e.server import Server
from tests.report_data import fixed_split

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
PLOTS = ("plot-mean", "plot-lift", "plot-allocation", "plot-srm")
DRAWN = """svg => [...svg.querySelectorAll('path, polyline')].filter(
    e => (e.getAttribute('d') || e.getAttribute('points') || '').trim().length > 2).length"""


def require_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CROUPIER_REQUIRE_BROWSER"):
            pytest.fail(message + " (CROUPIER_REQUIRE_BROWSER is set)")
        pytest.skip(message)


def screenshot_dir(tmp_path: Path) -> Path:
    configured = os.environ.get("CROUPIER_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def seed(server: Server, database_url: str) -> None:
    """Two running experiments through the API (an A/B/C split and a bandit), a few live
    decisions, then a day of history written into the server's SQLite file."""
    variants = [
        {"key": "control", "payload": {"model": "v1"}, "is_control": True},
        {"key": "treatment", "payload": {"model": "v2"}},
        {"key": "challenger", "payload": {"model": "v3"}},
    ]
    bodies = [
        experiment_body("ranker", name="Ranking model: v2 & v3 <vs> v1", variants=variants),
        experiment_body(
            "bandit",
            name="Thompson bandit",
            policy={"type": "thompson", "reward": "bernoulli", "min_probability": 0.05},
        ),
    ]
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as api:
        for body in bodies:
            assert api.post("/v1/experiments", json=body).status_code == 201
            assert api.post(f"/v1/experiments/{body['key']}/start").status_code == 200
        for i in range(20):
            decided = api.post("/v1/experiments/ranker/decisions", json={"unit_id": f"live-{i}"})
            assert decided.status_code == 200, decided.text
    engine = make_engine(database_url)
    try:
        sessions = make_session_factory(engine)
        fixed_split(sessions, "ranker", means=[0.10, 0.13, 0.095], n=6000, seed=11)
        fixed_split(sessions, "bandit", means=[0.10, 0.12], n=3000, seed=12)
    finally:
        engine.dispose()


def test_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    database_url = f"sqlite:///{tmp_path / 'croupier.db'}"
    server = Server(
        {
            "CROUPIER_DATABASE_URL": database_url,
            "CROUPIER_ADMIN_KEY": ADMIN_KEY,
            "CROUPIER_LEARNER_ENABLED": "false",
        },
        tmp_path / "server.log",
    )
    shots = screenshot_dir(tmp_path)
    problems: list[str] = []
    try:
        seed(server, database_url)
        read_key = httpx.post(
            f"{server.url}/v1/keys", json={"name": "analyst", "scopes": ["read"]}, headers=ADMIN
        ).json()["key"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 900})
                page.on(
                    "console",
                    lambda m: (
                        problems.append(f"console {m.type}: {m.text}")
                        if m.type in ("error", "warning")
                        else None
                    ),
                )
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.on(
                    "requestfailed",
                    # ERR_ABORTED: cancelled by the next navigation (the favicon), not a fault
                    lambda r: (
                        problems.append(f"request failed: {r.url} {r.failure}")
                        if "ERR_ABORTED" not in (r.failure or "")
                        else None
                    ),
                )

                # Not logged in: the dashboard sends the browser to the login form.
                page.goto(f"{server.url}/")
                assert page.url == f"{server.url}/dashboard/login"
                page.fill("input[name=key]", read_key)
                page.click("button[type=submit]")
                page.wait_for_url(f"{server.url}/dashboard/")
                assert "croupier_key" not in page.evaluate("document.cookie")  # HttpOnly

                # The list.
                page.wait_for_selector("#experiments:not([hidden]) tbody tr")
                rows = page.locator("#experiments tbody tr")
                assert rows.count() == 2
                assert "Ranking model: v2 & v3 <vs> v1" in page.inner_text("#experiments")
                assert "thompson" in page.inner_text("#experiments")
                page.screenshot(path=str(shots / "dashboard-list.png"), full_page=True)

                # The A/B/C experiment page.
                page.click("a[href='/dashboard/experiments/ranker'] >> nth=0")
                page.wait_for_url(f"{server.url}/dashboard/experiments/ranker")
                page.wait_for_selector("#report:not([hidden])")
                page.wait_for_selector("#status[hidden]", state="attached")
                assert page.inner_text("#recommendation .action").strip()
                assert "Rule:" in page.inner_text("#recommendation")
                assert "p =" in page.inner_text("#traffic")
                assert page.locator("#metrics table").count() >= 2
                assert "P(best)" in page.inner_text("#metrics")
                for plot in PLOTS:
                    drawn = page.eval_on_selector(f"#{plot}", DRAWN)
                    assert drawn > 0, f"{plot} has no drawn path"
                    assert page.locator(f"#{plot} text").count() > 3, f"{plot} has no labels"
                # bands: the mean and lift plots shade their always-valid intervals
                assert page.locator("#plot-mean path.band").count() >= 3
                assert page.locator("#plot-lift path.band").count() >= 2
                assert page.get_attribute("#csv", "href") == (
                    "/v1/experiments/ranker/report?format=csv"
                )
                screenshot = shots / "dashboard.png"
                page.screenshot(path=str(screenshot), full_page=True)
                print(f"dashboard screenshot: {screenshot}")

                # The JSON link works with the cookie alone (same-site navigation).
                response = page.request.get(f"{server.url}/v1/experiments/ranker/report")
                assert response.status == 200
                assert response.json()["experiment"]["key"] == "ranker"

                # The bandit's page has the off-policy table.
                page.goto(f"{server.url}/dashboard/experiments/bandit")
                page.wait_for_selector("#status[hidden]", state="attached")
                assert page.is_visible("#off-policy-section")
                for plot in PLOTS:
                    assert page.eval_on_selector(f"#{plot}", DRAWN) > 0, plot
                page.screenshot(path=str(shots / "dashboard-bandit.png"), full_page=True)

                # A missing experiment: a visible message, not a blank page.
                page.goto(f"{server.url}/dashboard/experiments/missing")
                page.wait_for_selector("#status.error")
                assert "404" in page.inner_text("#status")
                problems[:] = [
                    p
                    for p in problems
                    if "/v1/experiments/missing/report" not in p and "404" not in p
                ]

                # Logging out forgets the key.
                page.goto(f"{server.url}/dashboard/")
                page.click("form.logout button")
                page.wait_for_url(f"{server.url}/dashboard/login")
                page.goto(f"{server.url}/dashboard/")
                assert page.url == f"{server.url}/dashboard/login"
            finally:
                browser.close()
    except BaseException:
        print(server.output())
        raise
    finally:
        server.stop()
    assert problems == [], problems
