"""Contextual experiments through the real decide / outcome / learn path: learning per segment,
calibrated propensities, model versions (inspect, download, roll back), DSJson / CSV / Parquet
export, counterfactual evaluation and promotion, and the 4xx answers to bad settings."""

from __future__ import annotations

import io
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from vowpalwabbit import Workspace

from app.bandits import ContextualPolicy
from app.settings import Settings
from tests.conftest import ADMIN
from tests.test_learner import learn

Create = Callable[..., dict[str, Any]]
SEED = int(os.environ.get("CROUPIER_TEST_SEED", "7"))
WINDOW_S = 1.0  # = update_interval_s: the learner clock moved by one window makes a pass due
VARIANTS = [{"key": "a", "is_control": True}, {"key": "b"}, {"key": "c"}]
BEST = {"x": "a", "y": "b", "z": "c"}  # the best variant differs by segment
CONTEXTUAL = {
    "type": "contextual",
    "exploration": {"algorithm": "squarecb", "gamma_scale": 10},
    "min_probability": 0.02,
    "update_interval_s": 1,
}
THOMPSON = {"type": "thompson", "min_probability": 0.02, "update_interval_s": 1}


def reward_probability(segment: str, variant: str) -> float:
    return 0.7 if BEST[segment] == variant else 0.2


def decide_batch(client: TestClient, key: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(
        f"/v1/experiments/{key}/decisions/batch", json={"items": items}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["items"]
    return answers


def send_rewards(client: TestClient, decisions: list[tuple[str, float]]) -> None:
    items = [{"decision_id": d, "value": v} for d, v in decisions if v]
    if items:
        response = client.post("/v1/outcomes/batch", json={"items": items}, headers=ADMIN)
        assert response.status_code == 200, response.text


def run_rounds(
    client: TestClient, settings: Settings, keys: list[str], *, rounds: int, size: int, seed: int
) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """The same seeded traffic to every experiment: decide, reward, learn, per round.
    Returns, per experiment, (segment, variant, answer) of every decision."""
    rng = random.Random(seed)
    served: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for r in range(rounds):
        units = [(f"r{r}u{i}", rng.choice("xyz"), rng.random()) for i in range(size)]
        draws = [rng.random() for _ in units]
        for key in keys:
            # Client decision ids and a fixed salt: every draw is replayable, so the run is too.
            items = [
                {
                    "unit_id": u,
                    "decision_id": f"{key}-{u}",
                    "context": {"segment": s, "user": {"score": score}},
                }
                for u, s, score in units
            ]
            answers = decide_batch(client, key, items)
            rewards = []
            for (_, segment, _), u, answer in zip(units, draws, answers, strict=True):
                value = float(u < reward_probability(segment, answer["variant"]))
                rewards.append((answer["decision_id"], value))
                served[key].append((segment, answer["variant"], answer))
            send_rewards(client, rewards)
        # Every reward window closes (the learner's clock is moved on by exactly one window).
        learn(settings, ahead_s=WINDOW_S)
        # Deciders pick a new version up at their next policy check; do that check now.
        client.app.state.runtime.policies.refresh()  # type: ignore[attr-defined]
    return served


def total_reward(served: list[tuple[str, str, dict[str, Any]]]) -> float:
    return sum(reward_probability(s, v) for s, v, _ in served)


@pytest.fixture
def trained(client: TestClient, create_experiment: Create, settings: Settings) -> dict[str, Any]:
    for key, policy in (("ctx", CONTEXTUAL), ("ts", THOMPSON)):
        create_experiment(
            key, variants=VARIANTS, policy=policy, reward_window_s=WINDOW_S, salt=f"salt-{key}"
        )
    served = run_rounds(client, settings, ["ctx", "ts"], rounds=5, size=400, seed=SEED)
    time.sleep(WINDOW_S)  # every decision is closed now (exports and evaluations see all)
    return served


def test_contextual_beats_thompson_and_its_propensities_match_its_frequencies(
    client: TestClient, trained: dict[str, Any]
) -> None:
    # Expected reward of what was served (the environment's known means): per segment the
    # contextual policy learns the segment's best variant, Thompson one variant for all.
    contextual, thompson = total_reward(trained["ctx"]), total_reward(trained["ts"])
    assert contextual > thompson * 1.25, (contextual, thompson)
    last = trained["ctx"][-400:]
    assert all(a["policy_version"] >= 5 for _, _, a in last)
    # Calibration: in each segment, each variant's share of the decisions matches the mean of
    # the probability the logged vectors gave it (the vectors come from the database).
    csv = client.get("/v1/experiments/ctx/export?format=csv", headers=ADMIN)
    log = pd.read_csv(io.StringIO(csv.text))
    log["segment"] = [json.loads(c)["segment"] for c in log["context"]]
    for segment, rows in log.groupby("segment"):
        n = len(rows)
        for variant in ("a", "b", "c"):
            p = float(rows[f"p_{variant}"].mean())
            share = float((rows["variant"] == variant).mean())
            assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n), (segment, variant, share, p)
        best = float((rows[rows.policy_version >= 4]["variant"] == BEST[segment]).mean())
        assert best > 0.8


def versions(client: TestClient, key: str = "ctx") -> list[dict[str, Any]]:
    response = client.get(f"/v1/experiments/{key}/policy-versions", headers=ADMIN)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()
    return data


def model_bytes(client: TestClient, number: int, key: str = "ctx") -> bytes:
    response = client.get(f"/v1/experiments/{key}/policy-versions/{number}/model", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.content


def test_versions_carry_training_statistics_and_a_rolled_back_model_serves_again(
    client: TestClient, trained: dict[str, Any]
) -> None:
    listed = versions(client)
    assert listed[0]["model_bytes"] is None  # version 1 explores uniformly
    second = client.get("/v1/experiments/ctx/policy-versions/2", headers=ADMIN).json()
    model = second["details"]["model"]
    assert model["new_examples"] == 400
    assert model["examples"] == 400
    assert model["resumed_from"] == 1
    assert (
        model["ips_value"]["ci_low"]
        <= model["ips_value"]["estimate"]
        <= model["ips_value"]["ci_high"]
    )
    assert "--cb_explore_adf" in model["vw_args"]
    assert "--squarecb" in model["vw_args"]
    latest = listed[-1]
    assert latest["details"]["model"]["examples"] == 2000

    policy = ContextualPolicy(n_arms=3, actions=["a", "b", "c"], min_probability=0.02)
    v2 = policy.bind(model_bytes(client, 2))
    v_last = policy.bind(model_bytes(client, latest["number"]))
    context = {"segment": "y", "user": {"score": 0.5}}
    assert not np.allclose(v2.probabilities(context), v_last.probabilities(context))

    response = client.post("/v1/experiments/ctx/policy-versions/2/rollback", headers=ADMIN)
    assert response.status_code == 201, response.text
    restored = response.json()
    assert restored["number"] == latest["number"] + 1
    assert restored["details"]["rolled_back_to"] == 2
    assert model_bytes(client, restored["number"]) == model_bytes(client, 2)
    answer = decide_batch(client, "ctx", [{"unit_id": "again", "context": context}])[0]
    assert answer["policy_version"] == restored["number"]
    expected = v2.probabilities(context)
    assert answer["propensity"] == pytest.approx(expected[["a", "b", "c"].index(answer["variant"])])
    log = client.get("/v1/experiments/ctx/revisions", headers=ADMIN).json()
    assert log[-1]["action"] == "rolled_back"

    for path, status in (
        ("/v1/experiments/ctx/policy-versions/999/rollback", 404),
        (f"/v1/experiments/ctx/policy-versions/{restored['number']}/rollback", 409),
        ("/v1/experiments/ts/policy-versions/1/rollback", 409),
        ("/v1/experiments/ctx/policy-versions/0/rollback", 422),
    ):
        bad = client.post(path, headers=ADMIN)
        assert bad.status_code == status, (path, bad.text)
        assert bad.headers["content-type"].startswith("application/problem+json")


def test_dsjson_export_is_read_by_vw_and_trains_the_same_model(
    client: TestClient, trained: dict[str, Any]
) -> None:
    response = client.get("/v1/experiments/ctx/export?format=dsjson", headers=ADMIN)
    assert response.status_code == 200, response.text
    lines = response.text.splitlines()
    assert len(lines) == 2000  # every closed decision
    latest = versions(client)[-1]
    args = latest["details"]["model"]["vw_args"].split()
    workspace = Workspace(arg_list=[*args, "--dsjson"])
    try:
        for line in lines:
            event = json.loads(line)
            examples = workspace.parse(line)
            assert len(examples) == 1 + 3  # shared + one per variant
            workspace.learn(examples)
            workspace.finish_example(examples)
            assert event["_label_probability"] == event["p"][0]
            assert event["_label_cost"] in (0.0, -1.0)
        # The offline model, trained once on the export, predicts what the service's model
        # (trained pass by pass) predicts: same features, same hashes, same order.
        served = ContextualPolicy(n_arms=3, actions=["a", "b", "c"], min_probability=0.02)
        served = served.bind(model_bytes(client, latest["number"]))
        for segment in "xyz":
            context = {"segment": segment, "user": {"score": 0.25}}
            offline = workspace.predict([json.dumps({"c": _shared_json(context), "a": [1, 2, 3]})])
            assert np.allclose(served.floored(offline), served.probabilities(context), atol=1e-6)
    finally:
        workspace.finish()


def _shared_json(context: dict[str, Any]) -> dict[str, Any]:
    from app.bandits import vw_format

    shared: dict[str, Any] = dict(vw_format.namespaces(context, vw_format.CONTEXT_NAMESPACE))
    actions = vw_format.action_namespaces(["a", "b", "c"], [None, None, None])
    shared["_multi"] = actions
    return shared


def test_csv_and_parquet_exports_hold_context_propensities_and_rewards(
    client: TestClient, trained: dict[str, Any]
) -> None:
    csv = client.get("/v1/experiments/ctx/export?format=csv", headers=ADMIN)
    parquet = client.get("/v1/experiments/ctx/export?format=parquet", headers=ADMIN)
    assert csv.status_code == parquet.status_code == 200
    from_csv = pd.read_csv(io.StringIO(csv.text))
    from_parquet = pd.read_parquet(io.BytesIO(parquet.content))
    for frame in (from_csv, from_parquet):
        assert len(frame) == 2000
        assert {"context", "propensity", "reward", "p_a", "p_b", "p_c"} <= set(frame.columns)
        first = json.loads(frame["context"].iloc[0])
        assert set(first) == {"segment", "user"}
    bad = client.get("/v1/experiments/ctx/export?format=xml", headers=ADMIN)
    assert bad.status_code == 422


def test_counterfactual_evaluation_and_promotion(
    client: TestClient, trained: dict[str, Any]
) -> None:
    body = {
        "candidates": {
            "greedy": {"exploration": {"algorithm": "epsilon", "epsilon": 0.02}},
            "no_interactions": {"interactions": []},
        }
    }
    response = client.post("/v1/experiments/ctx/evaluations", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["decisions"] == 2000
    table = {(r["candidate"], r["estimator"]): r for r in result["estimates"]}
    for name in ("current", "greedy", "no_interactions", "uniform", "variant:a"):
        assert table[(name, "ips")]["estimate"] is not None, name
    assert table[("logged", "on-policy")]["estimate"] > table[("uniform", "dr")]["estimate"]
    # Without shared x action interactions the model cannot tell segments apart.
    assert table[("greedy", "dr")]["estimate"] > table[("no_interactions", "dr")]["estimate"]
    # The uniform policy's value is known: the mean of the segment means (0.7 + 2 * 0.2) / 3.
    uniform = table[("uniform", "ips")]
    assert uniform["ci_low"] - 0.02 < 0.3667 < uniform["ci_high"] + 0.02

    bad = client.post(
        "/v1/experiments/ctx/evaluations",
        json={"candidates": {"x": {"exploration": {"algorithm": "wild"}}}},
        headers=ADMIN,
    )
    assert bad.status_code == 422
    assert "exploration.algorithm" in bad.text

    before = versions(client)[-1]["number"]
    promoted = client.post(
        "/v1/experiments/ctx/promotions",
        json={"settings": body["candidates"]["greedy"]},
        headers=ADMIN,
    )
    assert promoted.status_code == 201, promoted.text
    assert promoted.json()["policy"]["exploration"] == {"algorithm": "epsilon", "epsilon": 0.02}
    after = versions(client)
    assert after[-1]["number"] == before + 2  # settings revision, then the retrained model
    retrained = after[-1]["details"]["model"]
    assert retrained["resumed_from"] is None
    assert retrained["examples"] == 2000
    assert "--epsilon 0.02" in retrained["vw_args"]
    not_contextual = client.post(
        "/v1/experiments/ts/promotions", json={"settings": {}}, headers=ADMIN
    )
    assert not_contextual.status_code == 409


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"exploration": {"algorithm": "thompson"}}, "body.policy.exploration.algorithm"),
        (
            {"exploration": {"algorithm": "epsilon", "epsilon": 0}},
            "body.policy.exploration.epsilon",
        ),
        ({"exploration": {"algorithm": "bag", "epsilon": 1.5}}, "body.policy.exploration.epsilon"),
        ({"exploration": {"algorithm": "cover", "gamma": 1}}, "body.policy.exploration.gamma"),
        ({"min_probability": 0}, "body.policy.min_probability"),
        ({"min_probability": 0.5}, "body.policy.min_probability"),
        ({"cb_type": "magic"}, "body.policy.cb_type"),
        ({"exploration": "squarecb", "cb_type": "ips"}, "body.policy.cb_type"),
        ({"interactions": [["user"]]}, "body.policy.interactions[0]"),
        ({"learning_rate": -1}, "body.policy.learning_rate"),
        ({"bits": 40}, "body.policy.bits"),
    ],
)
def test_bad_contextual_settings_are_422_naming_the_field(
    client: TestClient, policy: dict[str, Any], field: str
) -> None:
    body = {
        "key": "bad",
        "name": "bad",
        "variants": VARIANTS,
        "policy": {"type": "contextual", **policy},
    }
    response = client.post("/v1/experiments", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"] == field for e in problem["errors"]), problem


def test_bad_action_features_and_contexts_are_422(
    client: TestClient, create_experiment: Create
) -> None:
    variants = [{"key": "a", "is_control": True, "payload": {"features": {"deep": {"x": {}}}}}]
    response = client.post(
        "/v1/experiments",
        json={
            "key": "bad",
            "name": "b",
            "variants": [*variants, {"key": "b"}],
            "policy": {"type": "contextual"},
        },
        headers=ADMIN,
    )
    assert response.status_code == 422, response.text
    assert "variants[*].payload.features" in response.text
    create_experiment("ctx", variants=VARIANTS, policy=CONTEXTUAL)
    for context, rule in (
        ({"a": {"b": {"c": 1}}}, "nesting"),
        ({"big": 1e39}, "number_range"),
        ({"bad name": 1}, "feature_name"),
        ({"text": "x" * 300}, "string_too_long"),
        ({"x": 1, "context": {"x": 2}}, "appears twice"),
    ):
        response = client.post(
            "/v1/experiments/ctx/decisions",
            json={"unit_id": "u", "context": context},
            headers=ADMIN,
        )
        assert response.status_code == 422, (context, response.text)
        assert rule in response.text


def test_hostile_text_values_are_served_and_learned_safely(
    client: TestClient, create_experiment: Create, settings: Settings
) -> None:
    create_experiment("ctx", variants=VARIANTS, policy=CONTEXTUAL, reward_window_s=WINDOW_S)
    hostile = ["a b", "|user x:1", "x:2", "line\nbreak", "\u00e9\u6f22\U0001f600", "_multi", ""]
    items = [
        {"unit_id": f"u{i}", "context": {"text": t, "ns": {"t": t}}} for i, t in enumerate(hostile)
    ]
    answers = decide_batch(client, "ctx", items)
    send_rewards(client, [(a["decision_id"], 1.0) for a in answers])
    learn(settings, ahead_s=WINDOW_S)
    time.sleep(WINDOW_S)
    latest = versions(client)[-1]
    assert latest["details"]["model"]["new_examples"] == len(hostile)
    exported = client.get("/v1/experiments/ctx/export?format=dsjson", headers=ADMIN).text
    workspace = Workspace("--cb_explore_adf --dsjson --quiet")
    try:
        for line in exported.splitlines():
            examples = workspace.parse(line)
            assert len(examples) == 4
            workspace.finish_example(examples)
    finally:
        workspace.finish()
