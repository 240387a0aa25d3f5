"""Contexts as Vowpal Wabbit features: what VW itself parses from the text lines and the DSJson
events the service produces (hypothesis over hostile names and values)."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vowpalwabbit import Workspace

from app.bandits import vw_format
from app.bandits.contextual import ContextualPolicy

CONSTANT_INDEX = 128  # VW's constant namespace, added to every example (no --noconstant)
FLOAT32_MAX = float(np.finfo(np.float32).max)

# --- strategies ---------------------------------------------------------------------------

NAMES = st.text()  # spaces, '|', ':', newlines, tabs, unicode, leading '_', '' ...
HOSTILE = st.sampled_from(
    ["", " ", "|", ":", "a b", "x|y", "k:1", "\n", "\t", "_label", "_multi", "é", "名", "%41", "="]
)
ANY_NAME = NAMES | HOSTILE


FLOATS = st.floats(min_value=-1e38, max_value=1e38, allow_nan=False)
INTS = st.integers(min_value=-(10**38), max_value=10**38)
NUMBERS = FLOATS | INTS | st.sampled_from([0.0, -0.0, 1.0, 1e38])
VALUES = NUMBERS | st.booleans() | ANY_NAME


def contexts(values: st.SearchStrategy[Any] = VALUES, *, default: str) -> st.SearchStrategy[Any]:
    """Flat and namespaced contexts. The namespace named like the default one is left out (it
    merges with the flat features: test_flat_features_and_a_context_namespace_*), and so is a
    flat action feature named `id` (reserved: test_action_feature_id_is_reserved)."""
    flat = st.dictionaries(
        ANY_NAME.filter(lambda n: default != vw_format.ACTION_NAMESPACE or n != "id"),
        values,
        max_size=5,
    )
    spaces = st.dictionaries(
        ANY_NAME.filter(lambda n: n != default),
        st.dictionaries(ANY_NAME, values, max_size=4),
        max_size=4,
    )
    return st.tuples(flat, spaces).map(lambda pair: {**pair[0], **pair[1]})


ACTION_KEYS = st.lists(ANY_NAME, min_size=1, max_size=4, unique=True)


# --- what VW should see -----------------------------------------------------------------------


def index_of(namespace: str) -> int:
    """VW indexes a namespace by the first character of its (encoded) name."""
    return ord(vw_format.encode(namespace)[0])


def expected_features(
    features: Mapping[str, Any] | None, default: str, extra: tuple[tuple[str, float], ...] = ()
) -> dict[int, list[float]]:
    """VW index -> weights of the features VW must hold, in order, from the raw mapping: the
    namespaces in order of first appearance, each feature once."""
    spaces: dict[str, list[float]] = {}
    for name, value in (features or {}).items():
        if isinstance(value, Mapping):
            spaces.setdefault(name, []).extend(_weight(v) for v in value.values())
        else:
            spaces.setdefault(default, []).append(_weight(value))
    for namespace, weight in extra:
        spaces.setdefault(namespace, []).append(weight)
    result: dict[int, list[float]] = {}
    for namespace, weights in spaces.items():
        kept = [w for w in weights if abs(w) >= vw_format.MIN_MAGNITUDE]  # 0 and tiny: left out
        if kept:
            result.setdefault(index_of(namespace), []).extend(kept)
    return result


def _weight(value: Any) -> float:
    return 1.0 if isinstance(value, bool | str) else float(value)


def parsed_features(example: Any) -> dict[int, list[float]]:
    """VW index -> feature weights of one parsed example (the constant namespace left out)."""
    result: dict[int, list[float]] = {}
    for i in range(example.num_namespaces()):
        weights = [example.feature_weight(i, j) for j in range(example.num_features_in(i))]
        result[example.namespace(i)] = weights
    constant = result.pop(CONSTANT_INDEX, None)
    assert constant == [1.0]
    return result


def assert_same_features(actual: dict[int, list[float]], expected: dict[int, list[float]]) -> None:
    """Same indices (nothing injected, nothing lost), same counts, weights as float32 within
    VW's parsing error (it accumulates digits in float32: a few ulps)."""
    assert sorted(actual) == sorted(expected)
    for index, weights in expected.items():
        # Order within an index is immaterial to VW (namespaces sharing a first character
        # share the index, and a feature's weight does not depend on its position).
        got = sorted(actual[index])
        assert len(got) == len(weights), (chr(index), got, weights)
        want = np.sort(np.float32(weights).astype(np.float64))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=0, err_msg=chr(index))


def parse_text(lines: list[str]) -> list[Any]:
    workspace = Workspace("--cb_explore_adf --quiet")
    examples = workspace.parse(lines)
    result = list(examples)
    return result


# --- encode --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_NAME, unique=True, max_size=30))
def test_encode_is_injective_and_safe(texts: list[str]) -> None:
    encoded = [vw_format.encode(t) for t in texts]
    assert len(set(encoded)) == len(texts)
    for text, name in zip(texts, encoded, strict=True):
        assert re.fullmatch(r"[A-Za-z0-9%._~-]*", name), name
        assert not name.startswith("_")
        assert (name == "%") == (text == "")


def test_encode_examples() -> None:
    assert vw_format.encode("a b|c:d") == "a%20b%7Cc%3Ad"
    assert vw_format.encode("_label") == "%5Flabel"
    assert vw_format.encode("x_y") == "x_y"
    assert vw_format.encode("\n\t") == "%0A%09"
    assert vw_format.encode("é") == "%C3%A9"
    # injective across the leading-underscore rewrite: '%5F...' itself is encoded
    assert vw_format.encode("%5Fa") == "%255Fa" != vw_format.encode("_a")


# --- invalid values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        1.0000001e38,
        -1e39,
        10**39,
        -(10**39),
        10**400,  # too large for a double: OverflowError inside, ValueError outside
        math.nan,
        math.inf,
        -math.inf,
        1e308,
    ],
    ids=repr,
)
def test_numbers_out_of_range_raise(value: Any) -> None:
    with pytest.raises(ValueError, match="numeric features must be finite"):
        vw_format.namespaces({"x": value}, "context")
    with pytest.raises(ValueError, match=r"user\.x"):
        vw_format.namespaces({"user": {"x": value}}, "context")


@pytest.mark.parametrize("value", [1e38, -1e38, 10**38, -(10**38)])
def test_the_largest_numbers_are_accepted(value: Any) -> None:
    assert vw_format.namespaces({"x": value}, "context") == {"context": {"x": float(value)}}


@pytest.mark.parametrize(
    "context",
    [{"a": {"b": {"c": 1}}}, {"a": {"b": {}}}, {"a": {"b": [1]}}, {"a": None}, {"a": [1, 2]}],
    ids=repr,
)
def test_deeper_nesting_and_other_types_raise(context: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        vw_format.namespaces(context, "context")


# --- text lines, as VW parses them ---------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    context=contexts(default=vw_format.CONTEXT_NAMESPACE),
    keys=ACTION_KEYS,
    data=st.data(),
)
def test_text_lines_parse_into_exactly_the_expected_features(
    context: dict[str, Any], keys: list[str], data: st.DataObject
) -> None:
    action_features = [
        data.draw(st.none() | contexts(default=vw_format.ACTION_NAMESPACE)) for _ in keys
    ]
    policy = ContextualPolicy(n_arms=len(keys), actions=keys, action_features=action_features)
    lines = policy.lines(context)
    assert all("\n" not in line and "\r" not in line for line in lines)
    workspace = Workspace("--cb_explore_adf --quiet")
    examples = workspace.parse(lines)
    try:
        assert len(examples) == 1 + len(keys)
        shared, actions = examples[0], examples[1:]
        assert_same_features(
            parsed_features(shared), expected_features(context, vw_format.CONTEXT_NAMESPACE)
        )
        for example, extra in zip(actions, action_features, strict=True):
            want = expected_features(
                extra, vw_format.ACTION_NAMESPACE, ((vw_format.ACTION_NAMESPACE, 1.0),)
            )
            assert_same_features(parsed_features(example), want)
        # distinct keys: distinct `id=` features, so no two actions look alike to VW
        signatures = [json.dumps(example_signature(example)) for example in actions]
        assert len(set(signatures)) == len(keys)
    finally:
        workspace.finish_example(examples)
        workspace.finish()


def test_text_lines_of_hostile_context_stay_on_their_line() -> None:
    policy = ContextualPolicy(n_arms=2, actions=["a b", "|x\n"])
    context = {"x y": "a|b c:d\nshared |evil 1", "_label_cost": 3.5, "ns\tx": {"_multi": True}}
    lines = policy.lines(context)
    assert lines == [
        "shared |context x%20y=a%7Cb%20c%3Ad%0Ashared%20%7Cevil%201 %5Flabel_cost:3.5 "
        "|ns%09x %5Fmulti=true",
        "|action id=a%20b",
        "|action id=%7Cx%0A",
    ]
    examples = parse_text(lines)
    assert len(examples) == 3
    assert parsed_features(examples[0]) == {ord("c"): [1.0, 3.5], ord("n"): [1.0]}


def test_zero_and_tiny_weights_are_left_out() -> None:
    """0, -0.0 and |x| < 1e-28 are left out of text and DSJson alike (VW's text parser reads
    tiny powers of ten wrongly: 1e-250 came back as 1e6, 1.5e-200 as inf)."""
    context = {"zero": 0, "neg": -0.0, "tiny": 1e-45, "small": 9.9e-29, "kept": 2.5e-28}
    lines = ContextualPolicy(n_arms=1).lines(context)
    assert parsed_features(parse_text(lines)[0]) == {ord("c"): [np.float32(2.5e-28).item()]}


@pytest.mark.parametrize("value", [1e-250, 1.5e-200, 3e-130, 1.2e-37, 1.2345678901234567e-25])
def test_tiny_numbers_reach_vw_as_tiny_weights_or_not_at_all(value: float) -> None:
    lines = ContextualPolicy(n_arms=1).lines({"x": value, "y": -value})
    weights = parsed_features(parse_text(lines)[0]).get(ord("c"), [])
    expected = [] if value < vw_format.MIN_MAGNITUDE else [value, -value]
    np.testing.assert_allclose(weights, np.float32(expected), rtol=1e-5)


def test_empty_feature_name_with_weight_one_is_kept() -> None:
    lines = ContextualPolicy(n_arms=1).lines({"": 1})
    assert parsed_features(parse_text(lines)[0]) == {ord("c"): [1.0]}


def test_empty_feature_name_hashes_alike_in_text_and_dsjson() -> None:
    policy = ContextualPolicy(n_arms=1)
    context = {"": 2.0}
    text = Workspace("--cb_explore_adf --quiet").parse(policy.lines(context))
    dsjson = parse_dsjson(policy, context, arm=0, probabilities=[1.0], reward=1.0)
    assert example_signature(text[0]) == example_signature(dsjson[0])


def test_flat_features_and_a_context_namespace_merge_but_never_collide() -> None:
    spaces = vw_format.namespaces({"x": 1, "context": {"y": 2}}, vw_format.CONTEXT_NAMESPACE)
    assert spaces == {"context": {"x": 1.0, "y": 2.0}}
    with pytest.raises(ValueError, match="appears twice"):
        vw_format.namespaces({"x": 1, "context": {"x": 2}}, vw_format.CONTEXT_NAMESPACE)


def test_action_feature_id_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        vw_format.action_namespaces(["a", "b"], [{"id": "b"}, None])
    spaces = vw_format.action_namespaces(["a"], [{"meta": {"id": "b"}}])
    assert spaces == [{"meta": {"id=b": 1.0}, "action": {"id=a": 1.0}}]


def test_empty_namespace_name_is_the_same_namespace_in_dsjson() -> None:
    policy = ContextualPolicy(n_arms=2)
    context = {"": {"a": 2.0}}
    text = Workspace("--cb_explore_adf --quiet").parse(policy.lines(context))
    dsjson = parse_dsjson(policy, context, arm=0, probabilities=[0.5, 0.5], reward=1.0)
    assert example_signature(text[0]) == example_signature(dsjson[0])


def test_lone_surrogates_are_encoded() -> None:
    assert vw_format.encode("\ud800") == "%ED%A0%80"


# --- DSJson --------------------------------------------------------------------------------


def event(
    policy: ContextualPolicy,
    context: Mapping[str, Any] | None,
    *,
    arm: int,
    probabilities: list[float],
    reward: float,
    event_id: str = "e1",
) -> dict[str, Any]:
    actions = vw_format.action_namespaces(policy.actions, policy.action_features)
    return vw_format.dsjson_event(
        event_id=event_id,
        timestamp="2024-06-01T00:00:00.000Z",
        shared=policy.shared(context),
        actions=actions,
        arm=arm,
        probabilities=probabilities,
        reward=reward,
    )


def parse_dsjson(policy: ContextualPolicy, context: Any, **kwargs: Any) -> list[Any]:
    workspace = Workspace("--cb_explore_adf --dsjson --quiet")
    return list(workspace.parse(json.dumps(event(policy, context, **kwargs))))


def example_signature(example: Any) -> dict[int, list[int]]:
    """VW index -> feature hashes, in order."""
    return {
        example.namespace(i): [example.feature(i, j) for j in range(example.num_features_in(i))]
        for i in range(example.num_namespaces())
    }


def example_weights(example: Any) -> list[float]:
    return [
        example.feature_weight(i, j)
        for i in range(example.num_namespaces())
        for j in range(example.num_features_in(i))
    ]


SAFE_NUMBERS = st.floats(min_value=-1e38, max_value=1e38, allow_nan=False) | INTS
SAFE_VALUES = SAFE_NUMBERS | st.booleans() | ANY_NAME


@settings(max_examples=80, deadline=None)
@given(
    context=contexts(SAFE_VALUES, default=vw_format.CONTEXT_NAMESPACE),
    keys=ACTION_KEYS,
    data=st.data(),
)
def test_dsjson_parses_into_the_same_examples_as_the_text_lines(
    context: dict[str, Any], keys: list[str], data: st.DataObject
) -> None:
    arm = data.draw(st.integers(0, len(keys) - 1))
    raw = data.draw(st.lists(st.floats(0.01, 1.0), min_size=len(keys), max_size=len(keys)))
    probabilities = [p / math.fsum(raw) for p in raw]
    reward = data.draw(st.floats(-100, 100, allow_nan=False))
    policy = ContextualPolicy(n_arms=len(keys), actions=keys)
    line = json.dumps(event(policy, context, arm=arm, probabilities=probabilities, reward=reward))
    assert "\n" not in line
    from_json = Workspace("--cb_explore_adf --dsjson --quiet")
    from_text = Workspace("--cb_explore_adf --quiet")
    json_examples = from_json.parse(line)
    text_examples = from_text.parse(policy.lines(context, label=(arm, -reward, probabilities[arm])))
    try:
        assert len(json_examples) == len(text_examples) == 1 + len(keys)
        for a, b in zip(json_examples, text_examples, strict=True):
            assert example_signature(a) == example_signature(b)
            # the text parser accumulates digits in float32, JSON rounds once: a few ulps apart
            np.testing.assert_allclose(example_weights(a), example_weights(b), rtol=1e-5)
        # the label: on the chosen action only, cost -reward, probability = propensity
        for position, example in enumerate(json_examples[1:]):
            if position == arm:
                assert example.get_cbandits_num_costs() == 1
                assert example.get_cbandits_cost(0) == pytest.approx(-reward, rel=1e-6, abs=1e-6)
                assert example.get_cbandits_probability(0) == pytest.approx(
                    probabilities[arm], rel=1e-6
                )
            else:
                assert example.get_cbandits_num_costs() == 0
    finally:
        from_json.finish_example(json_examples)
        from_text.finish_example(text_examples)
        from_json.finish()
        from_text.finish()


def test_dsjson_event_layout() -> None:
    policy = ContextualPolicy(n_arms=3, actions=["a", "b", "c"])
    data = event(policy, {"x": 1.5}, arm=1, probabilities=[0.2, 0.5, 0.3], reward=2.0)
    assert data["_label_cost"] == -2.0
    assert data["_label_probability"] == 0.5
    assert data["_label_Action"] == 2
    assert data["_labelIndex"] == 1
    assert data["a"] == [2, 1, 3]
    assert data["p"] == [0.5, 0.2, 0.3]
    assert data["c"]["context"] == {"x": 1.5}
    assert [m["action"] for m in data["c"]["_multi"]] == [
        {"id=a": 1.0},
        {"id=b": 1.0},
        {"id=c": 1.0},
    ]


def _segment_context(rng: random.Random) -> dict[str, Any]:
    return {
        "segment": rng.choice(["a b|c", "_under", "naïve:1"]),
        "score": rng.random(),
        "count": rng.randint(-5, 50),
        "vip": rng.random() < 0.3,
        "user\tagent": {"os": rng.choice(["ios", "android\n"]), "age": rng.randint(18, 80)},
    }


@pytest.mark.parametrize("exploration", ["epsilon", "softmax", "squarecb"])
def test_a_model_trained_on_dsjson_predicts_like_one_trained_on_text(exploration: str) -> None:
    """Same decisions, two encodings, same model: the encodings hash identically."""
    policy = ContextualPolicy(
        n_arms=3,
        actions=["red", "green|", "_blue"],
        action_features=[{"price": 1.5}, {"tier": "gold"}, None],
        exploration={"algorithm": exploration},
    )
    best = {"a b|c": 0, "_under": 1, "naïve:1": 2}
    from_text = Workspace(arg_list=policy.vw_args())
    from_json = Workspace(arg_list=[*policy.vw_args(), "--dsjson"])
    rng = random.Random(7)
    uniform = [1 / 3] * 3
    try:
        for t in range(400):
            context = _segment_context(rng)
            arm = rng.randrange(3)
            reward = float(rng.random() < (0.8 if arm == best[context["segment"]] else 0.2))
            from_text.learn(policy.lines(context, label=(arm, -reward, uniform[arm])))
            line = event(
                policy, context, arm=arm, probabilities=uniform, reward=reward, event_id=f"e{t}"
            )
            from_json.learn(json.dumps(line))
        largest = 0.0
        for _ in range(60):
            context = _segment_context(rng)
            text_pmf = from_text.predict(policy.lines(context))
            line = event(policy, context, arm=0, probabilities=uniform, reward=0.0)
            json_pmf = from_json.predict(json.dumps(line))
            largest = max(largest, float(np.max(np.abs(np.subtract(text_pmf, json_pmf)))))
        assert largest <= 1e-6
        # and the model did learn something (the comparison is not between two blank models)
        pmf = from_text.predict(policy.lines({**_segment_context(rng), "segment": "_under"}))
        assert int(np.argmax(pmf)) == 1
    finally:
        from_text.finish()
        from_json.finish()


def test_labels_from_numpy_numbers_are_plain_numbers() -> None:
    """repr(np.float64(0.5)) is 'np.float64(0.5)' under numpy 2: a label built from numpy
    numbers once reached VW as garbage and nothing was learned."""
    lines = ContextualPolicy(n_arms=2).lines({"x": 1}, (1, np.float64(-1.0), np.float32(0.25)))
    assert lines[2].startswith("0:-1.0:0.25 |action")
    workspace = Workspace("--cb_explore_adf --quiet")
    try:
        examples = workspace.parse(lines)
        label = examples[2].get_label()
        assert (label.costs[0].cost, label.costs[0].probability) == (-1.0, 0.25)
        workspace.finish_example(examples)
    finally:
        workspace.finish()
