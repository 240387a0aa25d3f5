"""The contextual (Vowpal Wabbit) policy: configuration, serving, learning, replay, threads."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from scipy import stats

from app.bandits import (
    ContextualLearner,
    ContextualPolicy,
    PolicyConfigError,
    build_policy,
)
from app.bandits.contextual import RewardModel

NAN = float("nan")
ACTIONS = ["red", "green", "blue"]
SEGMENTS = ["north", "south", "east"]
BEST = {"north": 0, "south": 1, "east": 2}  # the best action differs per segment


def contextual(params: dict[str, Any] | None = None, n_arms: int = 3) -> ContextualPolicy:
    policy = build_policy(
        "contextual", params or {}, n_arms=n_arms, actions=ACTIONS[:n_arms], action_features=None
    )
    assert isinstance(policy, ContextualPolicy)
    return policy


# --- configuration -------------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    ({"exploration": {"algorithm": "ucb"}}, "exploration.algorithm"),
    ({"exploration": "thompson"}, "exploration.algorithm"),
    ({"exploration": 0.1}, "exploration"),
    ({"exploration": {"algorithm": "epsilon", "gamma_scale": 10}}, "exploration.gamma_scale"),
    ({"exploration": {"algorithm": "softmax", "epsilon": 0.1}}, "exploration.epsilon"),
    ({"exploration": {"algorithm": "epsilon", "epsilon": 0}}, "exploration.epsilon"),
    ({"exploration": {"algorithm": "epsilon", "epsilon": 1.5}}, "exploration.epsilon"),
    ({"exploration": {"algorithm": "epsilon", "epsilon": NAN}}, "exploration.epsilon"),
    ({"exploration": {"algorithm": "bag", "epsilon": math.inf}}, "exploration.epsilon"),
    ({"exploration": {"algorithm": "cover", "n": 0}}, "exploration.n"),
    ({"exploration": {"algorithm": "cover", "n": 2.0}}, "exploration.n"),
    ({"exploration": {"algorithm": "squarecb", "gamma_scale": 0}}, "exploration.gamma_scale"),
    ({"exploration": {"algorithm": "softmax", "lambda": -1}}, "exploration.lambda"),
    ({"min_probability": 0}, "min_probability"),
    ({"min_probability": 0.34}, "min_probability"),  # > 1/K for K = 3
    ({"min_probability": NAN}, "min_probability"),
    ({"cb_type": "bogus"}, "cb_type"),
    ({"cb_type": 1}, "cb_type"),
    ({"interactions": "*a"}, "interactions"),
    ({"interactions": [["user"]]}, "interactions[0]"),
    ({"interactions": [["*", "action"], ["a", "b", "c", "d"]]}, "interactions[1]"),
    ({"interactions": [["user", ""]]}, "interactions[0]"),
    ({"interactions": [["user", 3]]}, "interactions[0]"),
    ({"interactions": [["a", "b"]] * 21}, "interactions"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"bits": 40}, "bits"),
    ({"bogus": 1}, "bogus"),
    # settings VW itself refuses (check_vw)
    ({"exploration": {"algorithm": "squarecb"}, "cb_type": "ips"}, "cb_type"),
    ({"exploration": {"algorithm": "squarecb"}, "cb_type": "dr"}, "cb_type"),
    ({"exploration": {"algorithm": "cover"}, "cb_type": "dm"}, "cb_type"),
]


@pytest.mark.parametrize(("params", "field"), BAD, ids=[repr(p) for p, _ in BAD])
def test_bad_configuration_names_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyConfigError) as error:
        contextual(params)
    assert error.value.field == field


def test_bad_actions_and_action_features() -> None:
    with pytest.raises(PolicyConfigError) as error:
        build_policy("contextual", {}, n_arms=2, actions=["a", "a"])
    assert error.value.field == "actions"
    with pytest.raises(PolicyConfigError) as error:
        build_policy("contextual", {}, n_arms=2, action_features=[None])
    assert error.value.field == "action_features"
    with pytest.raises(PolicyConfigError) as error:
        build_policy("contextual", {}, n_arms=2, action_features=[{"p": NAN}, None])
    assert error.value.field == "action_features"


@pytest.mark.parametrize("algorithm", ["epsilon", "squarecb", "cover", "bag", "softmax"])
def test_every_exploration_algorithm_builds_with_its_defaults(algorithm: str) -> None:
    policy = contextual({"exploration": {"algorithm": algorithm}})
    assert policy.exploration["algorithm"] == algorithm
    assert policy.min_probability == 0.005


# --- serving -------------------------------------------------------------------------------


def context_of(segment: str, rng: np.random.Generator | None = None) -> dict[str, Any]:
    noise = float(rng.random()) if rng is not None else 0.5
    return {"segment": segment, "noise": noise, "user": {"vip": segment == "east"}}


def train(
    policy: ContextualPolicy, n: int, *, seed: int = 1, learner: ContextualLearner | None = None
) -> ContextualLearner:
    """Uniform logging in the segmented environment: reward 0.8 for the segment's best
    action, 0.2 otherwise (Bernoulli)."""
    rng = np.random.default_rng(seed)
    learner = learner or policy.learner()
    for _ in range(n):
        segment = SEGMENTS[int(rng.integers(3))]
        arm = int(rng.integers(policy.n_arms))
        reward = float(rng.random() < (0.8 if arm == BEST[segment] else 0.2))
        learner.learn(context_of(segment, rng), arm, reward, 1.0 / policy.n_arms)
    return learner


@pytest.fixture(scope="module")
def trained() -> tuple[ContextualPolicy, bytes]:
    policy = contextual({"exploration": {"algorithm": "epsilon", "epsilon": 0.1}})
    learner = train(policy, 3000)
    model = learner.model()
    learner.close()
    return policy, model


def test_without_a_model_the_policy_is_uniform() -> None:
    policy = contextual()
    assert policy.model is None
    for context in [None, {}, context_of("north")]:
        np.testing.assert_array_equal(policy.probabilities(context), np.full(3, 1 / 3))
    assert policy.initial_state().probabilities == (1 / 3, 1 / 3, 1 / 3)


def test_the_segmented_environment_is_learned(trained: tuple[ContextualPolicy, bytes]) -> None:
    policy, model = trained
    bound = policy.bind(model)
    for segment, best in BEST.items():
        p = bound.probabilities(context_of(segment))
        assert int(np.argmax(p)) == best, (segment, p)
        assert p[best] > 0.8
        assert np.all(p >= policy.min_probability)
        assert math.fsum(p.tolist()) == pytest.approx(1.0, abs=1e-9)


def test_choose_is_deterministic_and_its_propensity_is_the_probability(
    trained: tuple[ContextualPolicy, bytes],
) -> None:
    policy, model = trained
    bound = policy.bind(model)
    state = bound.initial_state()
    context = context_of("south")
    probabilities = bound.probabilities(context)
    for i in range(50):
        first = bound.choose(state, salt="s", unit_id=f"u{i}", decision_id=f"d{i}", context=context)
        again = policy.bind(model).choose(
            state, salt="s", unit_id="other", decision_id=f"d{i}", context=context
        )
        assert first == again
        assert first.propensity == probabilities[first.arm]
        assert first.probabilities == tuple(probabilities.tolist())


@pytest.mark.parametrize("algorithm", ["epsilon", "squarecb", "cover", "bag", "softmax"])
def test_every_probability_respects_the_floor(algorithm: str) -> None:
    policy = contextual({"exploration": {"algorithm": algorithm}, "min_probability": 0.02})
    learner = train(policy, 300)
    bound = policy.bind(learner.model())
    learner.close()
    for segment in SEGMENTS:
        p = bound.probabilities(context_of(segment))
        assert p.min() >= 0.02
        assert math.fsum(p.tolist()) == pytest.approx(1.0, abs=1e-9)


def test_learn_returns_the_floored_pmf_before_the_update() -> None:
    policy = contextual({"min_probability": 0.05})
    learner = train(policy, 200)
    before = policy.bind(learner.model()).probabilities(context_of("east"))
    returned = learner.learn(context_of("east"), 2, 1.0, 1 / 3)
    np.testing.assert_allclose(returned, before, atol=1e-7)
    assert returned.min() >= 0.05
    with pytest.raises(ValueError):
        learner.learn(context_of("east"), 3, 1.0, 0.5)
    with pytest.raises(ValueError):
        learner.learn(context_of("east"), 0, 1.0, 0.0)
    with pytest.raises(ValueError):
        learner.learn(context_of("east"), 0, NAN, 0.5)
    learner.close()


def test_a_saved_and_reloaded_model_predicts_identically() -> None:
    policy = contextual({"exploration": {"algorithm": "softmax"}})
    learner = train(policy, 500)
    model = learner.model()
    reloaded = policy.bind(model)
    rng = np.random.default_rng(3)
    for segment in SEGMENTS * 3:
        context = context_of(segment, rng)
        live = policy.floored(learner._workspace.predict(policy.lines(context)))
        np.testing.assert_array_equal(reloaded.probabilities(context), live)
    learner.close()
    # the bytes of a model round-trip through a learner unchanged in behaviour
    resumed = policy.learner(model)
    assert policy.bind(resumed.model()).probabilities(context_of("north")).tolist() == (
        reloaded.probabilities(context_of("north")).tolist()
    )
    resumed.close()


def test_training_in_one_go_equals_train_save_resume_continue() -> None:
    policy = contextual({"exploration": {"algorithm": "squarecb"}})
    straight = train(policy, 400, seed=5)
    train(policy, 400, seed=6, learner=straight)
    first = train(policy, 400, seed=5)
    resumed = policy.learner(first.model())
    first.close()
    train(policy, 400, seed=6, learner=resumed)
    a, b = policy.bind(straight.model()), policy.bind(resumed.model())
    straight.close()
    resumed.close()
    rng = np.random.default_rng(4)
    for segment in SEGMENTS * 3:
        context = context_of(segment, rng)
        np.testing.assert_array_equal(a.probabilities(context), b.probabilities(context))


def test_choose_frequencies_agree_with_probabilities(
    trained: tuple[ContextualPolicy, bytes],
) -> None:
    policy, model = trained
    # a softer policy, so that every arm has a sizeable expected count
    soft = ContextualPolicy(
        n_arms=3, actions=ACTIONS, min_probability=0.2, exploration=policy.exploration
    ).bind(model)
    context = context_of("north")
    p = soft.probabilities(context)
    state = soft.initial_state()
    n = 3000
    counts = np.zeros(3)
    for i in range(n):
        choice = soft.choose(state, salt="freq", unit_id="u", decision_id=f"d{i}", context=context)
        counts[choice.arm] += 1
    assert stats.chisquare(counts, n * p).pvalue > 1e-4  # deterministic ids: not flaky


def test_concurrent_choices_match_sequential_ones(trained: tuple[ContextualPolicy, bytes]) -> None:
    policy, model = trained
    bound = policy.bind(model)
    state = bound.initial_state()
    rng = np.random.default_rng(11)
    jobs = [(f"d{i}", context_of(SEGMENTS[i % 3], rng)) for i in range(400)]

    def decide(job: tuple[str, dict[str, Any]]) -> tuple[Any, list[float]]:
        decision_id, context = job
        choice = bound.choose(
            state, salt="t", unit_id="u", decision_id=decision_id, context=context
        )
        return choice, bound.probabilities(context).tolist()

    sequential = [decide(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(decide, jobs))
    assert concurrent == sequential


def test_update_from_arm_totals_is_refused() -> None:
    with pytest.raises(PolicyConfigError) as error:
        contextual().update([])
    assert error.value.field == "type"


def test_reward_model_recovers_known_mean_rewards() -> None:
    """Each round's estimates are out of sample and noisy (online SGD: sd ~0.07 per round), so
    the check is on their average over the second half of the log."""
    policy = contextual()
    model = RewardModel(policy)
    means = {"north": [0.8, 0.2, 0.5], "south": [0.1, 0.7, 0.3], "east": [0.4, 0.4, 0.9]}
    estimates: dict[str, list[np.ndarray]] = {segment: [] for segment in means}
    rng = np.random.default_rng(2)
    for t in range(6000):
        segment = SEGMENTS[int(rng.integers(3))]
        arm = int(rng.integers(3))
        reward = float(rng.random() < means[segment][arm])
        qhat = model.predict_then_learn({"segment": segment}, arm, reward, 1 / 3)
        assert qhat.shape == (3,)
        if t >= 3000:
            estimates[segment].append(qhat)
    model.close()
    for segment, mean in means.items():
        np.testing.assert_allclose(np.mean(estimates[segment], axis=0), mean, atol=0.05)


# --- the fast path through pylibvw is VW's public path ----------------------------------------


def test_run_multi_learns_and_predicts_exactly_as_the_public_workspace_api() -> None:
    """`run_multi` skips pyvw's Example wrappers; the model it trains and the pmfs it returns
    must be those of Workspace.parse / learn / predict (a vowpalwabbit upgrade could break it)."""
    from vowpalwabbit import Workspace

    from app.bandits.contextual import run_multi

    policy = contextual({"exploration": {"algorithm": "squarecb"}})
    fast, public = Workspace(arg_list=policy.vw_args()), Workspace(arg_list=policy.vw_args())
    rng = np.random.default_rng(4)
    try:
        for _ in range(600):
            segment = SEGMENTS[rng.integers(3)]
            context = context_of(segment, rng)
            arm = int(rng.integers(3))
            reward = float(rng.random() < (0.8 if BEST[segment] == arm else 0.2))
            lines = policy.lines(context, (arm, -reward, 1 / 3))
            got = run_multi(fast, lines, learn=True)
            examples = public.parse(lines)
            public.learn(examples)
            want = examples[0].get_prediction(public.get_prediction_type())
            public.finish_example(examples)
            assert got == want
        for segment in SEGMENTS:
            lines = policy.lines(context_of(segment))
            assert run_multi(fast, lines, learn=False) == public.predict(lines)
    finally:
        fast.finish()
        public.finish()


def test_the_plain_python_floor_is_apply_floor() -> None:
    from app.bandits import apply_floor

    policy = contextual({"min_probability": 0.05})
    rng = np.random.default_rng(2)
    for _ in range(200):
        pmf = rng.dirichlet(np.ones(3) * 0.3).astype(np.float32).tolist()
        expected = apply_floor(np.asarray(pmf) / math.fsum(pmf), 0.05)
        np.testing.assert_allclose(policy.floored_list(pmf), expected, rtol=0, atol=1e-15)
        np.testing.assert_allclose(policy.floored_rows([pmf])[0], expected, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="invalid pmf"):
        policy.floored_list([0.5, float("nan"), 0.5])
    with pytest.raises(ValueError, match="invalid pmf"):
        policy.floored_list([0.5, 0.5])
