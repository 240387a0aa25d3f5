"""The analysts' dashboard: an experiment list and an experiment page with plots.

The pages are small HTML shells; hand-written scripts under ./static fetch the JSON API
(`/v1/experiments`, `/v1/experiments/{key}/report`) and draw the plots as inline SVG. Nothing is
built and nothing comes from another host. The key is asked for once: `POST /dashboard/login`
checks it has the `read` scope and stores it in the HttpOnly, SameSite=Strict `croupier_key`
cookie, which the API accepts for read-only GETs (app.security).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.errors import NotFound, ProblemError
from app.schemas import ExperimentKey
from app.security import COOKIE_NAME, authenticate, authorize

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PAGES = HERE / "pages"
LOGIN_PATH = "/dashboard/login"
HOME_PATH = "/dashboard/"
MAX_KEY_CHARS = 512

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form POSTs send Origin: null
    "X-Frame-Options": "DENY",
}
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


def _static_files() -> dict[str, tuple[Path, str]]:
    """Only these files are served: a fixed list, so no path ever reaches the file system."""
    return {
        path.name: (path, STATIC_TYPES[path.suffix])
        for path in sorted(STATIC.iterdir())
        if path.suffix in STATIC_TYPES
    }


STATIC_FILES = _static_files()


def _page(name: str, status_code: int = 200, **values: str) -> HTMLResponse:
    """The page `pages/<name>.html` with `{{field}}` replaced by the HTML-escaped value."""
    text = (PAGES / f"{name}.html").read_text(encoding="utf-8")
    for field, value in values.items():
        text = text.replace("{{" + field + "}}", html.escape(value, quote=True))
    return HTMLResponse(
        text, status_code=status_code, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"}
    )


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


async def _logged_in(request: Request) -> bool:
    try:
        await authorize(request, "read")
    except ProblemError as exc:
        if exc.status in (401, 403):
            return False
        raise
    return True


def _cookie_options(request: Request) -> dict[str, Any]:
    """The key cookie's attributes, the same when set and when cleared."""
    return {
        "path": "/",
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
    }


def _same_origin(request: Request) -> bool:
    """A form POST from this site: its Origin names this host or, without an Origin (older
    browsers), its Referer does (pages send it: Referrer-Policy same-origin). Neither: refused."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return False
    return urlsplit(source).netloc.lower() == request.headers.get("host", "").lower()


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(HOME_PATH, status_code=307)


@router.get("/dashboard", response_model=None)
async def dashboard_no_slash() -> RedirectResponse:
    return RedirectResponse(HOME_PATH, status_code=307)


@router.get("/dashboard/", response_model=None)
async def experiments_page(request: Request) -> Response:
    if not await _logged_in(request):
        return _redirect(LOGIN_PATH)
    return _page("experiments")


@router.get("/dashboard/experiments/{key}", response_model=None)
async def experiment_page(key: ExperimentKey, request: Request) -> Response:
    if not await _logged_in(request):
        return _redirect(LOGIN_PATH)
    return _page("experiment", key=key)


@router.get(LOGIN_PATH)
async def login_form() -> HTMLResponse:
    return _page("login", error="", hidden="hidden")


@router.post(LOGIN_PATH, response_model=None)
async def login(request: Request) -> Response:
    if not _same_origin(request):
        return _page("login", 403, error="Log in from this site's own form.", hidden="")
    body = (await request.body()).decode("utf-8", errors="replace")
    fields = parse_qs(body, max_num_fields=10)
    key = (fields.get("key") or [""])[0].strip()
    if not key or len(key) > MAX_KEY_CHARS:
        return _page("login", 401, error="Enter an API key.", hidden="")
    try:
        principal = await authenticate(request.app.state.runtime, key)
    except ProblemError as exc:
        if exc.status != 401:
            raise
        return _page("login", 401, error="This API key is unknown or revoked.", hidden="")
    if not principal.allows("read"):
        return _page(
            "login", 403, error="This API key has no 'read' scope: use a read key.", hidden=""
        )
    response = _redirect(HOME_PATH)
    response.set_cookie(COOKIE_NAME, key, **_cookie_options(request))
    return response


@router.post("/dashboard/logout", response_model=None)
async def logout(request: Request) -> Response:
    if not _same_origin(request):
        return _page("login", 403, error="Log out from this site's own pages.", hidden="")
    response = _redirect(LOGIN_PATH)
    response.delete_cookie(COOKIE_NAME, **_cookie_options(request))
    return response


@router.get("/dashboard/static/{name}")
async def static(name: str) -> Response:
    found = STATIC_FILES.get(name)
    if found is None:
        raise NotFound(f"no dashboard file {name!r}")
    path, media_type = found
    return Response(
        path.read_bytes(),
        media_type=media_type,
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )
