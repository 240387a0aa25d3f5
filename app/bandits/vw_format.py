"""Contexts and actions as Vowpal Wabbit features: one encoding for VW text and for DSJson.

A context is flat, `{feature: value}`, or namespaced, `{namespace: {feature: value}}` (the two
may be mixed). Flat features go to a default namespace (`context` for the shared example,
`action` for an action's). Each value becomes one VW feature:

* a number x      -> feature `name` with weight x (a *weighted* feature);
* a string s      -> feature `name=s` with weight 1 (a *categorical* feature, one-hot);
* a boolean b     -> feature `name=true` or `name=false` with weight 1.

Safety: every namespace name, feature name and string value is percent-encoded
(`urllib.parse.quote` with no safe characters, plus a leading `_`), so what reaches VW is
ASCII from `[A-Za-z0-9%.~-]` and `_` only after the first character. No value can carry a
space, `|`, `:`, newline or any other character VW's text format gives meaning to, so none can
end a feature, start a namespace or a new example; a leading `_` (which VW's JSON parser
reserves for `_label`, `_multi`, ...) cannot appear. Percent-encoding is injective, so two
different inputs never share a feature. The same names appear in the text lines the service
learns from and in the DSJson events it exports, so `vw --dsjson` hashes them identically.

Numbers must fit in VW's 32-bit floats (|x| <= 1e38); a larger or non-finite one raises
ValueError rather than silently becoming infinity inside the model. Text keeps 9 significant
digits of a number (every 32-bit float survives) and |x| < 1e-28 counts as 0; features of value
0 are left out, as VW leaves them out (see MIN_MAGNITUDE for why text needs this). The empty
name is `%`.
A feature given twice in one namespace (flat `x` and `{"context": {"x": ...}}`) and an action
feature named `id` (which would fake another variant's identity) raise ValueError.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

CONTEXT_NAMESPACE = "context"
ACTION_NAMESPACE = "action"
MAX_MAGNITUDE = 1e38
"""Largest |number| accepted: VW stores feature values as 32-bit floats (max ~3.4e38)."""
MIN_MAGNITUDE = 1e-28
"""Smaller |numbers| count as 0 (the feature is left out, as VW leaves out zeros). VW's text
parser computes mantissa * 10**(exponent - decimals) with an 8-bit power of ten, which goes
wrong below about 1e-37 (0, or even a huge or infinite weight below 1e-100)."""
DIGITS = 9
"""Significant digits kept of a number: enough to give back every 32-bit float, and few enough
that the text parser's power of ten stays in range down to MIN_MAGNITUDE."""
RESERVED_ACTION_FEATURE = "id"
"""`id=<variant key>` identifies each action; an action feature of that name could fake it."""

_PLAIN = re.compile(r"[A-Za-z0-9.~-][A-Za-z0-9_.~-]*")
"""Text that percent-encoding leaves as it is (and that does not start with `_`)."""

Namespaces = dict[str, dict[str, float]]
"""namespace -> {encoded feature name -> weight}, every name already encoded."""


@functools.lru_cache(maxsize=1 << 16)
def encode(text: str) -> str:
    """Percent-encode `text` so that it is a safe VW name (see the module docstring).

    The empty name becomes `%`, which no non-empty name encodes to (percent-encoding always
    puts two hex digits after a `%`): VW would otherwise read an empty feature name as an
    anonymous feature and an empty namespace as the default one."""
    if _PLAIN.fullmatch(text):  # the common case (names the service admits): unchanged
        return text
    if not text:
        return "%"
    encoded = quote(text, safe="", errors="surrogatepass")  # lone surrogates too (JSON allows)
    return "%5F" + encoded[1:] if encoded.startswith("_") else encoded


def feature(name: str, value: Any, *, where: str = "") -> tuple[str, float]:
    """The (encoded feature name, weight) of one context value (weight 0: left out)."""
    kind = type(value)
    if kind is str:  # the common cases first, by exact type: this runs per feature per decision
        return f"{encode(name)}={encode(value)}", 1.0
    if kind is float or kind is int:
        return encode(name), _weight(value, where or name)
    if isinstance(value, bool):
        return f"{encode(name)}={'true' if value else 'false'}", 1.0
    if isinstance(value, int | float):
        return encode(name), _weight(value, where or name)
    if isinstance(value, str):
        return f"{encode(name)}={encode(value)}", 1.0
    raise ValueError(
        f"{where or name}: feature values are strings, numbers or booleans, "
        f"got {type(value).__name__}"
    )


def _weight(value: float, label: str) -> float:
    try:
        weight = float(value)
    except OverflowError:
        weight = math.inf
    magnitude = abs(weight)
    if not magnitude <= MAX_MAGNITUDE:  # also NaN
        raise ValueError(
            f"{label}: numeric features must be finite with |x| <= {MAX_MAGNITUDE:g} "
            f"(VW stores 32-bit floats), got {value!r}"
        )
    return weight if magnitude >= MIN_MAGNITUDE else 0.0


def namespaces(features: Mapping[str, Any] | None, default: str) -> Namespaces:
    """Group a (flat or namespaced) mapping into encoded namespaces, flat ones under `default`."""
    result: Namespaces = {}
    if not features:
        return result
    for name, value in features.items():
        if type(value) is dict or isinstance(value, Mapping):
            space = encode(name)
            for inner, leaf in value.items():
                if type(leaf) is dict or isinstance(leaf, Mapping):
                    raise ValueError(f"{name}.{inner}: contexts nest one level deep")
                key, weight = feature(inner, leaf, where=f"{name}.{inner}")
                _add(result, space, key, weight, default)
        else:
            key, weight = feature(name, value)
            _add(result, encode(default), key, weight, default)
    return {space: items for space, items in result.items() if items}


def _add(result: Namespaces, space: str, key: str, weight: float, default: str) -> None:
    target = result.get(space)
    if target is None:
        target = result[space] = {}
    elif key in target:  # only when flat features meet a namespace named like the default
        raise ValueError(
            f"{key}: the feature appears twice in namespace {space!r} (flat features go to "
            f"namespace {default!r}; give each feature once)"
        )
    if weight != 0.0:
        target[key] = weight


def action_namespaces(
    action_ids: Sequence[str], action_features: Sequence[Mapping[str, Any] | None]
) -> list[Namespaces]:
    """Each action's namespaces: `action` holds `id=<variant key>` plus its flat features."""
    result = []
    for action_id, extra in zip(action_ids, action_features, strict=True):
        if extra and RESERVED_ACTION_FEATURE in extra:
            raise ValueError(
                f"{action_id}: the action feature name {RESERVED_ACTION_FEATURE!r} is reserved "
                "for the variant key"
            )
        spaces = namespaces(extra, ACTION_NAMESPACE)
        spaces.setdefault(ACTION_NAMESPACE, {})[f"id={encode(action_id)}"] = 1.0
        result.append(spaces)
    return result


def _text(spaces: Namespaces) -> str:
    parts = []
    for space, items in spaces.items():
        parts.append(f"|{space}")
        for name, weight in items.items():
            parts.append(name if weight == 1.0 else f"{name}:{weight:.{DIGITS}g}")
    return " ".join(parts)


def text_lines(
    shared: Namespaces,
    actions: Sequence[str],
    *,
    label: tuple[int, float, float] | None = None,
) -> list[str]:
    """The multi-line ADF example: `shared |...` then one line per action (already rendered
    with `action_texts`). `label` = (arm, cost, probability) marks the chosen action."""
    lines = [f"shared {_text(shared)}" if shared else "shared |"]
    for arm, action in enumerate(actions):
        if label is not None and arm == label[0]:
            lines.append(f"0:{float(label[1])!r}:{float(label[2])!r} {action}")  # numpy too
        else:
            lines.append(action)
    return lines


def action_texts(actions: Sequence[Namespaces]) -> list[str]:
    """Each action's VW text (without label), computed once per policy."""
    return [_text(spaces) for spaces in actions]


def dsjson_event(
    *,
    event_id: str,
    timestamp: str,
    shared: Namespaces,
    actions: Sequence[Namespaces],
    arm: int,
    probabilities: Sequence[float],
    reward: float,
) -> dict[str, Any]:
    """One decision as a Decision Service JSON (DSJson) event, the format `vw --dsjson`,
    Azure Personalizer and the Decision Service log: `a` lists the actions (1-based) with the
    chosen one first, `p` their probabilities in that order, `c` the shared namespaces plus
    `_multi` (one object per action, in action order); the label is the chosen action's cost
    (-reward) and propensity."""
    order = [arm] + [a for a in range(len(actions)) if a != arm]
    context: dict[str, Any] = {space: dict(items) for space, items in shared.items()}
    context["_multi"] = [{space: dict(items) for space, items in a.items()} for a in actions]
    return {
        "_label_cost": 0.0 - reward,  # never -0.0
        "_label_probability": probabilities[arm],
        "_label_Action": arm + 1,
        "_labelIndex": arm,
        "Timestamp": timestamp,
        "Version": "1",
        "EventId": event_id,
        "a": [a + 1 for a in order],
        "c": context,
        "p": [probabilities[a] for a in order],
    }


def iter_features(spaces: Namespaces) -> Iterator[tuple[str, str, float]]:
    """(namespace, feature, weight) triples, for inspection and tests."""
    for space, items in spaces.items():
        for name, weight in items.items():
            yield space, name, weight
