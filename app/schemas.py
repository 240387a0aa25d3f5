"""Shared pydantic building blocks: strict request models, bounded strings, finite numbers."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class RequestModel(BaseModel):
    """Every request body: unknown fields are errors, NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
MetricName = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
DecisionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


JSONObject = dict[str, Any]
