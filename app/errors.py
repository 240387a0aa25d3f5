"""RFC 9457 problem+json for every error the API returns.

One shape everywhere: {type, title, status, detail, instance, errors?}. Validation problems
list each offending field with the rule it broke: {"field": "body.variants[1].weight",
"rule": "greater_than", "message": "..."}.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("croupier")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldError(dict[str, str]):
    """{"field", "rule", "message"}: one broken rule of one input field."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(field=field, rule=rule, message=message)


class ProblemError(Exception):
    """Raise from services; becomes a problem+json response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.errors = list(errors)
        self.headers = headers


class NotFound(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(404, detail, kind="not-found")


class Conflict(ProblemError):
    def __init__(self, detail: str, *, kind: str = "conflict") -> None:
        super().__init__(409, detail, kind=kind)


class Invalid(ProblemError):
    """422 for a rule the schema alone cannot express (cross-field, state-dependent)."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(422, message, kind="validation", errors=[FieldError(field, rule, message)])


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str,
    instance: str,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://croupier.dev/problems/{kind}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def validation_errors(raw: Sequence[Any]) -> list[FieldError]:
    out = []
    for err in raw:
        loc = [p for p in err.get("loc", ()) if not _is_union_tag(p)]
        out.append(
            FieldError(_field_path(loc), str(err.get("type", "invalid")), err.get("msg", ""))
        )
    return out


def _is_union_tag(part: Any) -> bool:
    # pydantic adds tagged-union discriminators ("fixed", "function-after[...]") to locations.
    return isinstance(part, str) and ("[" in part or "(" in part)


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate a JSON body straight from bytes (pydantic's Rust parser), as FastAPI would,
    with the same 422 problem; used where FastAPI's own body handling costs too much."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ProblemError(
            415,
            f"send the body as JSON with 'Content-Type: application/json', got {media_type!r}",
            kind="unsupported-media-type",
        )
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = validation_errors(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        )
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise ProblemError(422, detail, kind="validation", errors=errors) from None


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            kind=exc.kind,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            422, detail, kind="validation", instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code,
            str(exc.detail),
            kind=_TITLES.get(exc.status_code, "error").lower().replace(" ", "-"),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s: %s", request.url.path, exc)
        return problem_response(
            503,
            "the database is unavailable or busy; nothing was written, retry",
            kind="unavailable",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "an unexpected error occurred; it has been logged",
            kind="internal",
            instance=request.url.path,
        )


_CURSOR = re.compile(r"[0-9]{1,12}")  # a row id; ASCII digits only


def page_cursor(cursor: str | None) -> int | None:
    """A list endpoint's `cursor` (a previous page's next_cursor) as the row id to continue
    from; None for the first page; 422 naming query.cursor when it is not one."""
    if cursor is None:
        return None
    if not _CURSOR.fullmatch(cursor):
        raise Invalid("query.cursor", "cursor", "cursor must be a next_cursor value")
    return int(cursor)
