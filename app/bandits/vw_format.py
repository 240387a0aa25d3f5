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
ValueError rather than silently becoming infinity inside the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

CONTEXT_NAMESPACE = "context"
ACTION_NAMESPACE = "action"
MAX_MAGNITUDE = 1e38
"""Largest |number| accepted: VW stores feature values as 32-bit floats (max ~3.4e38)."""

Namespaces = dict[str, dict[str, float]]
"""namespace -> {encoded feature name -> weight}, every name already encoded."""


def encode(text: str) -> str:
    """Percent-encode `text` so that it is a safe VW name (see the module docstring)."""
    encoded = quote(text, safe="")
    return "%5F" + encoded[1:] if encoded.startswith("_") else encoded


def feature(name: str, value: Any, *, where: str = "") -> tuple[str, float]:
    """The (encoded feature name, weight) of one context value."""
    label = where or name
    if isinstance(value, bool):
        return f"{encode(name)}={'true' if value else 'false'}", 1.0
    if isinstance(value, int | float):
        try:
            weight = float(value)
        except OverflowError:
            weight = math.inf
        if not (math.isfinite(weight) and abs(weight) <= MAX_MAGNITUDE):
            raise ValueError(
                f"{label}: numeric features must be finite with |x| <= {MAX_MAGNITUDE:g} "
                f"(VW stores 32-bit floats), got {value!r}"
            )
        return encode(name), weight
    if isinstance(value, str):
        return f"{encode(name)}={encode(value)}", 1.0
    raise ValueError(
        f"{label}: feature values are strings, numbers or booleans, got {type(value).__name__}"
    )


def namespaces(features: Mapping[str, Any] | None, default: str) -> Namespaces:
    """Group a (flat or namespaced) mapping into encoded namespaces, flat ones under `default`."""
    result: Namespaces = {}
    if not features:
        return result
    for name, value in features.items():
        if isinstance(value, Mapping):
            target = result.setdefault(encode(name), {})
            for inner, leaf in value.items():
                if isinstance(leaf, Mapping):
                    raise ValueError(f"{name}.{inner}: contexts nest one level deep")
                key, weight = feature(inner, leaf, where=f"{name}.{inner}")
                target[key] = weight
        else:
            key, weight = feature(name, value)
            result.setdefault(encode(default), {})[key] = weight
    return result


def action_namespaces(
    action_ids: Sequence[str], action_features: Sequence[Mapping[str, Any] | None]
) -> list[Namespaces]:
    """Each action's namespaces: `action` holds `id=<variant key>` plus its flat features."""
    result = []
    for action_id, extra in zip(action_ids, action_features, strict=True):
        spaces = namespaces(extra, ACTION_NAMESPACE)
        spaces.setdefault(ACTION_NAMESPACE, {})[f"id={encode(action_id)}"] = 1.0
        result.append(spaces)
    return result


def _text(spaces: Namespaces) -> str:
    parts = []
    for space, items in spaces.items():
        parts.append(f"|{space}")
        for name, weight in items.items():
            parts.append(name if weight == 1.0 else f"{name}:{weight!r}")
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
            lines.append(f"0:{label[1]!r}:{label[2]!r} {action}")
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
