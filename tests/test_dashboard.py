"""The analysts' dashboard: login with an HttpOnly SameSite=Strict cookie, the cookie reads
(GET, read scope) but never changes anything, static files, CSP, no external URLs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.dashboard.router import STATIC_FILES
from app.security import COOKIE_NAME
from tests.conftest import ADMIN, ADMIN_KEY, experiment_body
from tests.report_data import fixed_split

PAGES = Path(__file__).resolve().parents[1] / "app" / "dashboard" / "pages"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an XML namespace name, never fetched


def make_key(client: TestClient, *scopes: str) -> str:
    response = client.post("/v1/keys", json={"name": "k", "scopes": list(scopes)}, headers=ADMIN)
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def login(client: TestClient, key: str, url: str = "/dashboard/login") -> Any:
    # A browser posting the form sends its Origin (or at least its Referer).
    origin = "https://testserver" if url.startswith("https:") else "http://testserver"
    return client.post(url, data={"key": key}, headers={"Origin": origin}, follow_redirects=False)


def set_cookie_headers(response: Any) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 303, 307)
    assert response.headers["location"] == "/dashboard/"


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/experiments/exp"])
def test_pages_redirect_to_login_without_a_valid_cookie(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    client.cookies.set(COOKIE_NAME, "crp_nope_nope")
    assert client.get(path, follow_redirects=False).status_code == 303
    client.cookies.set(COOKIE_NAME, make_key(client, "decide"))  # no read scope
    assert client.get(path, follow_redirects=False).status_code == 303


def test_login_sets_an_httponly_samesite_strict_cookie(client: TestClient) -> None:
    form = client.get("/dashboard/login")
    assert form.status_code == 200
    assert form.headers["content-type"].startswith("text/html")
    assert 'name="key"' in form.text
    assert 'action="/dashboard/login"' in form.text

    key = make_key(client, "read")
    response = login(client, key)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/"
    (cookie,) = set_cookie_headers(response)
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert cookie.startswith(f"{COOKIE_NAME}={key}")
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    page = client.get("/dashboard/", follow_redirects=False)
    assert page.status_code == 200
    assert 'src="/dashboard/static/experiments.js"' in page.text


def test_login_over_https_marks_the_cookie_secure(client: TestClient) -> None:
    response = login(client, ADMIN_KEY, "https://testserver/dashboard/login")  # admin: allowed
    assert response.status_code == 303
    (cookie,) = set_cookie_headers(response)
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


@pytest.mark.parametrize("key", ["", "   ", "crp_nope_nope", "x" * 600, "wrong-key"])
def test_a_bad_key_shows_the_form_again_with_401(client: TestClient, key: str) -> None:
    response = login(client, key)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert 'name="key"' in response.text
    assert 'role="alert"' in response.text
    assert not set_cookie_headers(response)


def test_a_key_without_read_scope_is_refused(client: TestClient) -> None:
    response = login(client, make_key(client, "decide"))
    assert response.status_code == 403
    assert "read" in response.text
    assert not set_cookie_headers(response)


def test_a_login_posted_from_another_site_is_refused(client: TestClient) -> None:
    response = client.post(
        "/dashboard/login",
        data={"key": ADMIN_KEY},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert not set_cookie_headers(response)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Referer": "https://evil.example/page"}],
    ids=["no-origin-no-referer", "foreign-referer"],
)
def test_a_login_without_a_same_site_origin_or_referer_is_refused(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post(
        "/dashboard/login", data={"key": ADMIN_KEY}, headers=headers, follow_redirects=False
    )
    assert response.status_code == 403
    assert not set_cookie_headers(response)


def test_a_login_with_only_a_same_site_referer_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/dashboard/login",
        data={"key": ADMIN_KEY},
        headers={"Referer": "http://testserver/dashboard/login"},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_logout_clears_the_cookie(client: TestClient) -> None:
    assert login(client, make_key(client, "read")).status_code == 303
    assert client.get("/dashboard/", follow_redirects=False).status_code == 200
    response = client.post(
        "/dashboard/logout", headers={"Origin": "http://testserver"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    (cookie,) = set_cookie_headers(response)
    assert cookie.startswith(f'{COOKIE_NAME}=""') or cookie.startswith(f"{COOKIE_NAME}=;")
    assert "max-age=0" in cookie.lower()
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_the_cookie_reads_the_list_and_the_report(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    create_experiment("exp")
    fixed_split(client.app.state.runtime.sessions, "exp", means=[0.1, 0.12], n=2000, seed=3)  # type: ignore[attr-defined]
    assert login(client, make_key(client, "read")).status_code == 303
    listed = client.get("/v1/experiments")
    assert listed.status_code == 200
    assert [e["key"] for e in listed.json()["items"]] == ["exp"]
    assert client.get("/v1/experiments/exp").status_code == 200
    report = client.get("/v1/experiments/exp/report")
    assert report.status_code == 200
    series = report.json()["series"]
    assert series["period_ends"]
    assert set(series["primary_mean"]) == {"control", "treatment"}
    csv = client.get("/v1/experiments/exp/report?format=csv")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert client.head("/v1/experiments").status_code in (200, 405)  # never 401
    page = client.get("/dashboard/experiments/exp", follow_redirects=False)
    assert page.status_code == 200
    assert 'data-key="exp"' in page.text


def test_the_cookie_never_authorizes_a_change(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    create_experiment("exp")
    client.cookies.set(COOKIE_NAME, ADMIN_KEY)  # even an admin key, when sent as the cookie
    assert client.get("/v1/experiments").status_code == 200
    changes = [
        ("POST", "/v1/experiments", experiment_body("other")),
        ("PATCH", "/v1/experiments/exp", {"name": "changed"}),
        ("POST", "/v1/experiments/exp/pause", None),
        ("POST", "/v1/experiments/exp/conclude", {"winner": "treatment"}),
        ("POST", "/v1/experiments/exp/decisions", {"unit_id": "u"}),
        ("POST", "/v1/experiments/exp/decisions/batch", {"units": [{"unit_id": "u"}]}),
        ("POST", "/v1/outcomes", {"decision_id": "d", "value": 1}),
        ("POST", "/v1/keys", {"name": "k", "scopes": ["admin"]}),
        ("GET", "/v1/keys", None),  # admin scope: never through the cookie, even to read
    ]
    for method, path, body in changes:
        response = client.request(method, path, json=body)
        assert response.status_code == 401, (method, path, response.text)
    experiment = client.get("/v1/experiments/exp").json()
    assert experiment["status"] == "running"
    assert experiment["name"] == "Ranking model v2 vs v1"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer crp_nope_nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": ""},
        {"X-API-Key": "wrong"},
        {"X-API-Key": ""},
    ],
)
def test_a_bad_header_is_refused_even_with_a_good_cookie(
    client: TestClient, headers: dict[str, str]
) -> None:
    client.cookies.set(COOKIE_NAME, ADMIN_KEY)
    assert client.get("/v1/experiments").status_code == 200
    response = client.get("/v1/experiments", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_bearer_keeps_working_without_a_cookie(client: TestClient) -> None:
    read_key = make_key(client, "read")
    assert client.get("/v1/experiments", headers={"Authorization": f"Bearer {read_key}"}).is_success
    assert client.get("/v1/experiments").status_code == 401


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("dashboard.css", "text/css"),
        ("common.js", "text/javascript"),
        ("experiments.js", "text/javascript"),
        ("experiment.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_are_served_with_their_types(
    client: TestClient, name: str, content_type: str
) -> None:
    response = client.get(f"/dashboard/static/{name}")  # no key needed: no data in them
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content


@pytest.mark.parametrize(
    "path", ["/dashboard/static/nope.js", "/dashboard/static/..%2Frouter.py", "/dashboard/static/"]
)
def test_only_the_listed_static_files_are_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_pages_carry_a_strict_content_security_policy(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    create_experiment("exp")
    client.cookies.set(COOKIE_NAME, ADMIN_KEY)
    for path in ("/dashboard/login", "/dashboard/", "/dashboard/experiments/exp"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";")}
        assert directives["default-src"] == "default-src 'self'"
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert directives["frame-ancestors"] == "frame-ancestors 'none'"
        assert response.headers["x-content-type-options"] == "nosniff"
        text = response.text
        # no inline script, no inline style, no inline event handler
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert "<style" not in text
        assert not re.search(r"\sstyle=", text)
        assert not re.search(r"\son[a-z]+=", text)


def test_pages_and_static_files_name_no_other_host(
    client: TestClient, create_experiment: Callable[..., dict[str, Any]]
) -> None:
    create_experiment("exp")
    client.cookies.set(COOKIE_NAME, ADMIN_KEY)
    texts = {
        path: client.get(path).text
        for path in ("/dashboard/login", "/dashboard/", "/dashboard/experiments/exp")
    }
    texts.update({name: client.get(f"/dashboard/static/{name}").text for name in STATIC_FILES})
    assert set(STATIC_FILES) >= {"common.js", "experiments.js", "experiment.js", "dashboard.css"}
    for name, text in texts.items():
        text = text.replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://", text), name
        assert "//cdn" not in text, name
        assert not re.search(r"""(src|href)=["']//""", text), name
        assert "innerHTML" not in text, name
        assert "outerHTML" not in text, name
        assert "eval(" not in text, name


def test_the_experiment_key_is_validated(client: TestClient) -> None:
    client.cookies.set(COOKIE_NAME, ADMIN_KEY)
    response = client.get('/dashboard/experiments/"><script>', follow_redirects=False)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"  # never HTML
