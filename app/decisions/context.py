"""Decision contexts: flat `{feature: value}` or namespaced `{namespace: {feature: value}}`.

Values are strings (at most 256 characters), finite numbers (|x| <= 1e38) or booleans. Names are
`[A-Za-z0-9_.-]{1,64}`, so no name can break a downstream format (VW, CSV) or inject a
namespace. Each broken rule is a 422 naming the exact feature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from app.bandits.vw_format import MAX_MAGNITUDE
from app.errors import Invalid
from app.schemas import INT64, unsafe_text_problem

NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # used with fullmatch: no trailing newline
MAX_TEXT = 256


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise Invalid(where, "number_range", "integer features must fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid(where, "finite_number", f"feature values must be finite, got {value}")
        if abs(value) > MAX_MAGNITUDE:
            raise Invalid(
                where,
                "number_range",
                f"numeric features are at most {MAX_MAGNITUDE:g} in magnitude (contextual "
                f"models store 32-bit floats), got {value!r}",
            )
        return
    if isinstance(value, str):
        if problem := unsafe_text_problem(value):
            raise Invalid(where, "unsafe_text", problem)
        if len(value) > MAX_TEXT:
            raise Invalid(
                where,
                "string_too_long",
                f"text features are at most {MAX_TEXT} characters, got {len(value)}",
            )
        return
    raise Invalid(
        where,
        "feature_type",
        f"feature values are strings, numbers or booleans, got {type(value).__name__}",
    )


def _check_name(name: str, where: str) -> None:
    if not NAME.fullmatch(name):
        raise Invalid(
            where,
            "feature_name",
            f"feature and namespace names match [A-Za-z0-9_.-]{{1,64}}, got {name!r}",
        )


def check_context(context: Mapping[str, Any], *, where: str, max_features: int) -> None:
    count = 0
    for name, value in context.items():
        _check_name(name, f"{where}.{name}")
        if isinstance(value, dict):
            for inner, leaf in value.items():
                _check_name(inner, f"{where}.{name}.{inner}")
                if isinstance(leaf, dict):
                    raise Invalid(
                        f"{where}.{name}.{inner}",
                        "nesting",
                        "contexts nest one level deep: {namespace: {feature: value}}",
                    )
                _check_value(leaf, f"{where}.{name}.{inner}")
            count += len(value)
        else:
            _check_value(value, f"{where}.{name}")
            count += 1
    if count > max_features:
        raise Invalid(
            where,
            "max_features",
            f"a context may have at most {max_features} features, got {count}",
        )
