"""Shared pydantic building blocks: strict request models, safe text, finite numbers, JSON.

Every string that reaches the database or a log must be storable everywhere: no NUL
characters (PostgreSQL text cannot hold them) and no lone surrogates (not encodable as UTF-8).
Every number must be finite and every integer must fit in 64 bits (JSON encoders and
PostgreSQL refuse bigger ones). These rules are checked here, once, at the edge.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
INT64 = 2**63
MAX_JSON_DEPTH = 32
"""Deepest nesting of a stored JSON value (JSON encoders refuse a few hundred levels)."""
MAX_MAGNITUDE = 1e15
"""Bound on rewards and metric values: sums of squares of millions of them stay finite."""


def unsafe_text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "text must not contain NUL (\\u0000) characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (it holds a lone surrogate)"
    return None


def _safe_text(value: str) -> str:
    problem = unsafe_text_problem(value)
    if problem is not None:
        raise PydanticCustomError("unsafe_text", problem)
    return value


def json_value_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Why a parsed JSON value cannot be stored and served back, or None when it can."""
    if depth > MAX_JSON_DEPTH:
        return f"{path or 'value'}: JSON nests deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if -INT64 <= value < INT64 else f"{path or 'value'}: integer out of range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or 'value'}: numbers must be finite"
    if isinstance(value, str):
        problem = unsafe_text_problem(value)
        return f"{path or 'value'}: {problem}" if problem else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if problem := json_value_problem(item, f"{path}[{i}]", depth + 1):
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if problem := unsafe_text_problem(key):
                return f"{path}.{key!r}: {problem}"
            if problem := json_value_problem(item, f"{path}.{key}" if path else key, depth + 1):
                return problem
        return None
    return f"{path or 'value'}: not a JSON value"


def _safe_json(value: Any) -> Any:
    problem = json_value_problem(value)
    if problem is not None:
        raise PydanticCustomError("json_value", problem)
    return value


class RequestModel(BaseModel):
    """Every request body: unknown fields are errors, NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


SafeText = AfterValidator(_safe_text)
"""Use after StringConstraints: Annotated[str, StringConstraints(...), SafeText]."""
JSONPayload = Annotated[Any, AfterValidator(_safe_json)]
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
ExperimentKey = Annotated[str, Path(pattern=KEY_PATTERN, description="Experiment key.")]
MetricName = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=256), SafeText]
DecisionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
BoundedFloat = Annotated[FiniteFloat, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )
