"""Bad input: a 4xx problem+json naming the field and the rule, and nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import ADMIN, TABLES, count_rows, experiment_body

Create = Callable[..., dict[str, Any]]
V2 = [{"key": "a"}, {"key": "b"}]

CREATE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown field", {"colour": "red"}, "body.colour", "extra_forbidden"),
    ("mistyped name", {"name": 123}, "body.name", "string_type"),
    ("mistyped window", {"reward_window_s": "60"}, "body.reward_window_s", "float_type"),
    ("no variants", {"variants": []}, "body.variants", "too_short"),
    ("one variant", {"variants": [{"key": "a"}]}, "body.variants", "too_short"),
    (
        "duplicate variants",
        {"variants": [{"key": "a"}, {"key": "a"}]},
        "body.variants[1].key",
        "unique",
    ),
    (
        "two controls",
        {"variants": [{"key": "a", "is_control": True}, {"key": "b", "is_control": True}]},
        "body.variants",
        "one_control",
    ),
    (
        "weights not summing to 1",
        {"variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.4}]},
        "body.variants[*].weight",
        "policy",
    ),
    (
        "weights on some variants",
        {"variants": [{"key": "a", "weight": 0.5}, {"key": "b"}]},
        "body.variants",
        "weights_all_or_none",
    ),
    (
        "weights on a bandit",
        {
            "policy": {"type": "thompson"},
            "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        },
        "body.variants",
        "weights_fixed_only",
    ),
    (
        "zero weight",
        {"variants": [{"key": "a", "weight": 0}, {"key": "b", "weight": 1}]},
        "body.variants[0].weight",
        "greater_than",
    ),
    ("key too long", {"key": "k" * 65}, "body.key", "string_pattern_mismatch"),
    ("key with spaces", {"key": "my exp"}, "body.key", "string_pattern_mismatch"),
    ("name too long", {"name": "n" * 201}, "body.name", "string_too_long"),
    ("description too long", {"description": "d" * 2001}, "body.description", "string_too_long"),
    ("unknown policy", {"policy": {"type": "greedy"}}, "body.policy.type", "literal_error"),
    (
        "unknown policy setting",
        {"policy": {"type": "thompson", "floor": 0.1}, "variants": V2},
        "body.policy.floor",
        "policy",
    ),
    (
        "floor too high",
        {"policy": {"type": "thompson", "min_probability": 0.6}, "variants": V2},
        "body.policy.min_probability",
        "policy",
    ),
    (
        "epsilon zero",
        {"policy": {"type": "epsilon_greedy", "epsilon": 0}, "variants": V2},
        "body.policy.epsilon",
        "policy",
    ),
    ("negative window", {"reward_window_s": -1}, "body.reward_window_s", "greater_than"),
    ("coverage above 1", {"coverage": 1.5}, "body.coverage", "less_than_equal"),
    (
        "bernoulli default reward",
        {"policy": {"type": "thompson"}, "variants": V2, "default_reward": 2},
        "body.default_reward",
        "bernoulli_range",
    ),
    ("bad aggregation", {"reward_aggregation": "max"}, "body.reward_aggregation", "literal_error"),
    ("NUL in a name", {"name": "a\x00b"}, "body.name", "unsafe_text"),
    (
        "lone surrogate in a description",
        {"description": "x\ud800"},
        "body.description",
        "string_unicode",
    ),
    (
        "NUL in a payload",
        {"variants": [{"key": "a", "payload": {"m": "a\x00"}}, {"key": "b"}]},
        "body.variants[0].payload",
        "json_value",
    ),
    (
        "huge integer in a payload",
        {"variants": [{"key": "a", "payload": 10**30}, {"key": "b"}]},
        "body.variants[0].payload",
        "json_value",
    ),
    (
        "bernoulli rewards summed",
        {"policy": {"type": "thompson"}, "variants": V2, "reward_aggregation": "sum"},
        "body.reward_aggregation",
        "bernoulli_aggregation",
    ),
    (
        "default reward too large",
        {"default_reward": 1e16},
        "body.default_reward",
        "less_than_equal",
    ),
    (
        "too many variants",
        {"variants": [{"key": f"v{i}"} for i in range(51)]},
        "body.variants",
        "too_long",
    ),
]


def post_json(client: TestClient, path: str, body: Any) -> Any:
    """json.dumps escapes lone surrogates as \\udXXX, as a real client would send them."""
    return client.post(
        path, content=json.dumps(body), headers={**ADMIN, "Content-Type": "application/json"}
    )


def assert_problem(response: Any, status: int, field: str, rule: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"field": field, "rule": rule} in [
        {"field": e["field"], "rule": e["rule"]} for e in body["errors"]
    ], body
    assert body["detail"]


def assert_nothing_written(engine: Engine) -> None:
    assert {t: count_rows(engine, t) for t in TABLES} == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    ("case", "change", "field", "rule"), CREATE_CASES, ids=[c[0] for c in CREATE_CASES]
)
def test_bad_experiment_is_rejected_and_nothing_written(
    client: TestClient, engine: Engine, case: str, change: dict[str, Any], field: str, rule: str
) -> None:
    response = post_json(client, "/v1/experiments", experiment_body(**change))
    assert_problem(response, 422, field, rule)
    assert_nothing_written(engine)


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        ("NaN", "body.reward_window_s"),
        ("Infinity", "body.reward_window_s"),
        ("-Infinity", "body.default_reward"),
    ],
)
def test_non_finite_numbers_are_rejected(
    client: TestClient, engine: Engine, literal: str, field: str
) -> None:
    body = experiment_body()
    name = field.split(".")[-1]
    raw = json.dumps({**body, name: 0}).replace(f'"{name}": 0', f'"{name}": {literal}')
    response = client.post(
        "/v1/experiments", content=raw, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert_problem(response, 422, field, "finite_number")
    assert_nothing_written(engine)


DECIDE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing unit", {}, "body.unit_id", "missing"),
    ("numeric unit", {"unit_id": 42}, "body.unit_id", "string_type"),
    ("empty unit", {"unit_id": ""}, "body.unit_id", "string_too_short"),
    ("long unit", {"unit_id": "u" * 257}, "body.unit_id", "string_too_long"),
    ("unknown field", {"unit_id": "u", "user": "x"}, "body.user", "extra_forbidden"),
    (
        "bad decision id",
        {"unit_id": "u", "decision_id": "a b"},
        "body.decision_id",
        "string_pattern_mismatch",
    ),
    (
        "too many features",
        {"unit_id": "u", "context": {f"f{i}": 1 for i in range(257)}},
        "body.context",
        "max_features",
    ),
    (
        "too many namespaced features",
        {
            "unit_id": "u",
            "context": {
                "a": {f"f{i}": 1 for i in range(200)},
                "b": {f"f{i}": 1 for i in range(57)},
            },
        },
        "body.context",
        "max_features",
    ),
    (
        "feature string too long",
        {"unit_id": "u", "context": {"f": "x" * 257}},
        "body.context.f",
        "string_too_long",
    ),
    (
        "bad feature name",
        {"unit_id": "u", "context": {"a|b": 1}},
        "body.context.a|b",
        "feature_name",
    ),
    (
        "namespace injection",
        {"unit_id": "u", "context": {"ns": {"x y|z": 1}}},
        "body.context.ns.x y|z",
        "feature_name",
    ),
    (
        "list feature",
        {"unit_id": "u", "context": {"tags": ["a"]}},
        "body.context.tags",
        "feature_type",
    ),
    ("null feature", {"unit_id": "u", "context": {"f": None}}, "body.context.f", "feature_type"),
    ("context not an object", {"unit_id": "u", "context": [1]}, "body.context", "dict_type"),
    ("NUL in a unit", {"unit_id": "a\x00b"}, "body.unit_id", "unsafe_text"),
    # pydantic's JSON parser refuses lone surrogates outright (the message gives the column).
    ("lone surrogate in a unit", {"unit_id": "a\ud800"}, "body", "json_invalid"),
    (
        "NUL in a feature",
        {"unit_id": "u", "context": {"f": "a\x00"}},
        "body.context.f",
        "unsafe_text",
    ),
    (
        "surrogate in a feature",
        {"unit_id": "u", "context": {"ns": {"f": "\udfff"}}},
        "body",
        "json_invalid",
    ),
    (
        "huge integer feature",
        {"unit_id": "u", "context": {"f": 10**400}},
        "body.context.f",
        "number_range",
    ),
    (
        "feature name with a newline",
        {"unit_id": "u", "context": {"a\n": 1}},
        "body.context.a\n",
        "feature_name",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "field", "rule"), DECIDE_CASES, ids=[c[0] for c in DECIDE_CASES]
)
def test_bad_decision_request_is_rejected_and_nothing_written(
    client: TestClient,
    create_experiment: Create,
    engine: Engine,
    case: str,
    body: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    create_experiment()
    response = post_json(client, "/v1/experiments/exp/decisions", body)
    assert_problem(response, 422, field, rule)
    assert count_rows(engine, "decisions") == 0


def test_nested_context_deeper_than_namespaces_is_rejected(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    response = client.post(
        "/v1/experiments/exp/decisions",
        headers=ADMIN,
        json={"unit_id": "u", "context": {"a": {"b": {"c": 1}}}},
    )
    assert_problem(response, 422, "body.context.a.b", "nesting")
    assert count_rows(engine, "decisions") == 0


def test_nan_in_a_context_is_rejected(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    raw = '{"unit_id": "u", "context": {"score": NaN}}'
    response = client.post(
        "/v1/experiments/exp/decisions",
        content=raw,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "body.context.score", "finite_number")
    assert count_rows(engine, "decisions") == 0


def test_batch_with_a_bad_item_writes_nothing(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    items = [
        {"unit_id": "u1"},
        {"unit_id": "u2", "decision_id": "x"},
        {"unit_id": "u3", "decision_id": "x"},
    ]
    response = client.post(
        "/v1/experiments/exp/decisions/batch", json={"items": items}, headers=ADMIN
    )
    assert_problem(response, 422, "body.items[2].decision_id", "unique")
    too_many = {"items": [{"unit_id": "u"}] * 10_001}
    response = client.post("/v1/experiments/exp/decisions/batch", json=too_many, headers=ADMIN)
    assert_problem(response, 422, "body.items", "too_long")
    assert count_rows(engine, "decisions") == 0


OUTCOME_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "timestamp off the calendar",
        {"decision_id": "d", "value": 1, "timestamp": "9999-12-31T23:00:00-05:00"},
        "body.timestamp",
        "timestamp_range",
    ),
    (
        "timestamp in year 1",
        {"decision_id": "d", "value": 1, "timestamp": "0001-01-01T00:00:00+05:00"},
        "body.timestamp",
        "timestamp_range",
    ),
    ("missing value", {"decision_id": "d"}, "body.value", "missing"),
    ("string value", {"decision_id": "d", "value": "1"}, "body.value", "float_type"),
    ("bool value", {"decision_id": "d", "value": True}, "body.value", "float_type"),
    (
        "naive timestamp",
        {"decision_id": "d", "value": 1, "timestamp": "2026-01-01T00:00:00"},
        "body.timestamp",
        "timezone_aware",
    ),
    (
        "bad metric",
        {"decision_id": "d", "value": 1, "metric": "a b"},
        "body.metric",
        "string_pattern_mismatch",
    ),
    (
        "unknown field",
        {"decision_id": "d", "value": 1, "reward": 1},
        "body.reward",
        "extra_forbidden",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "field", "rule"), OUTCOME_CASES, ids=[c[0] for c in OUTCOME_CASES]
)
def test_bad_outcome_is_rejected(
    client: TestClient, engine: Engine, case: str, body: dict[str, Any], field: str, rule: str
) -> None:
    response = client.post("/v1/outcomes", json=body, headers=ADMIN)
    assert_problem(response, 422, field, rule)
    assert count_rows(engine, "outcomes") == 0


def test_body_over_one_mebibyte_is_413(client: TestClient, engine: Engine) -> None:
    big = {"items": [{"decision_id": f"d{i}", "value": 1} for i in range(40_000)]}
    raw = json.dumps(big)
    assert len(raw) > 1_048_576
    response = client.post(
        "/v1/outcomes/batch", content=raw, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "1048576" in response.json()["detail"]

    def chunks() -> Any:  # no Content-Length: the limit still holds
        for start in range(0, len(raw), 65_536):
            yield raw[start : start + 65_536].encode()

    response = client.post(
        "/v1/outcomes/batch",
        content=chunks(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert count_rows(engine, "outcomes") == 0


def test_malformed_json_is_a_422_problem(client: TestClient) -> None:
    response = client.post(
        "/v1/experiments",
        content="{not json",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_nan_in_a_variant_payload_is_rejected(client: TestClient, engine: Engine) -> None:
    raw = json.dumps(experiment_body()).replace('{"model": "v1"}', '{"score": NaN}')
    response = client.post(
        "/v1/experiments", content=raw, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert_problem(response, 422, "body.variants[0].payload", "json_value")
    assert_nothing_written(engine)


@pytest.mark.parametrize("cursor", ["abc", "\u00b2", "9" * 30, "-1", "1\n"])
def test_a_malformed_cursor_is_422(client: TestClient, cursor: str) -> None:
    response = client.get("/v1/experiments", params={"cursor": cursor}, headers=ADMIN)
    assert_problem(response, 422, "query.cursor", "cursor")


def test_decisions_must_be_sent_as_json(client: TestClient, create_experiment: Create) -> None:
    create_experiment()
    for path in ("/v1/experiments/exp/decisions", "/v1/experiments/exp/decisions/batch"):
        response = client.post(
            path, content='{"unit_id": "u"}', headers={**ADMIN, "Content-Type": "text/plain"}
        )
        assert response.status_code == 415, path
        assert "application/json" in response.json()["detail"]


def test_batch_decide_checks_the_key_before_the_body(client: TestClient) -> None:
    response = client.post(
        "/v1/experiments/exp/decisions/batch",
        content="not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401


def test_deeply_nested_payload_is_rejected(client: TestClient, engine: Engine) -> None:
    payload: Any = 1
    for _ in range(40):
        payload = {"x": payload}
    body = experiment_body(variants=[{"key": "a", "payload": payload}, {"key": "b"}])
    response = post_json(client, "/v1/experiments", body)
    assert_problem(response, 422, "body.variants[0].payload", "json_value")
    assert "deeper than 32" in response.json()["detail"]
    assert_nothing_written(engine)


def test_an_outcome_timestamped_before_its_decision_is_rejected(
    client: TestClient, create_experiment: Create, engine: Engine
) -> None:
    create_experiment()
    answer = client.post(
        "/v1/experiments/exp/decisions", json={"unit_id": "u"}, headers=ADMIN
    ).json()
    response = client.post(
        "/v1/outcomes/batch",
        headers=ADMIN,
        json={
            "items": [
                {"decision_id": answer["decision_id"], "value": 1},
                {
                    "decision_id": answer["decision_id"],
                    "value": 1,
                    "outcome_id": "o2",
                    "timestamp": "2001-01-01T00:00:00Z",
                },
            ]
        },
    )
    assert_problem(response, 422, "body.items[1].timestamp", "before_decision")
    assert count_rows(engine, "outcomes") == 0
