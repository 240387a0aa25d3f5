"""The four policies: propensities, replay, stickiness, learning, and their allocation rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from app.bandits import (
    ArmStats,
    EpsilonGreedyPolicy,
    FixedPolicy,
    Policy,
    PolicyConfigError,
    PolicyState,
    ThompsonPolicy,
    UCB1Policy,
    build_policy,
)

# Cumulative statistics that give every bandit a non-trivial allocation.
LEARNED = [ArmStats(40, 10.0, 10.0), ArmStats(45, 18.0, 18.0), ArmStats(8, 3.0, 3.0)]

BANDITS: list[Policy] = [
    ThompsonPolicy(3),
    ThompsonPolicy(3, reward="gaussian"),
    EpsilonGreedyPolicy(3, epsilon=0.3),
    UCB1Policy(3, min_probability=0.1),
]


def ids(policy: Policy) -> str:
    return f"{policy.kind}-{getattr(policy, 'reward', '')}".rstrip("-")


def simulate(
    policy: Policy, means: list[float], *, gaussian: bool, batches: int = 15, batch: int = 200
) -> tuple[PolicyState, np.ndarray]:
    """Batch learning as the service does it: decide a batch, learn, swap the state in."""
    rng = np.random.default_rng(20240601)
    totals = [ArmStats() for _ in means]
    pulls = np.zeros(len(means), dtype=int)
    state = policy.initial_state()
    for t in range(batches):
        for k in range(batch):
            choice = policy.choose(state, salt="sim", unit_id=f"u{k}", decision_id=f"d{t}-{k}")
            mean = means[choice.arm]
            y = float(rng.normal(mean, 1.0)) if gaussian else float(rng.random() < mean)
            totals[choice.arm] = totals[choice.arm] + ArmStats(1, y, y * y)
            pulls[choice.arm] += 1
        state = policy.update(totals)
    return state, pulls


@pytest.mark.parametrize("policy", BANDITS, ids=ids)
def test_bandit_choices_follow_the_logged_propensities(policy: Policy) -> None:
    state = policy.update(LEARNED)
    choices = [
        policy.choose(state, salt="exp-1", unit_id="same-unit", decision_id=f"d-{i}")
        for i in range(20_000)
    ]
    assert all(c.propensity == state.probabilities[c.arm] for c in choices)
    assert all(c.probabilities == state.probabilities for c in choices)
    counts = np.bincount([c.arm for c in choices], minlength=3)
    # Chi-square goodness of fit: a correct sampler fails at p <= 0.001 once in 1000 salts;
    # these decision ids are fixed, so the outcome is deterministic.
    expected = np.array(state.probabilities) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 0.001


def test_fixed_split_over_units_follows_the_weights() -> None:
    policy = FixedPolicy((0.1, 0.6, 0.3))
    state = policy.initial_state()
    choices = [
        policy.choose(state, salt="exp-1", unit_id=f"unit-{i}", decision_id="d")
        for i in range(20_000)
    ]
    assert all(c.propensity == state.probabilities[c.arm] for c in choices)
    counts = np.bincount([c.arm for c in choices], minlength=3)
    assert stats.chisquare(counts, np.array([0.1, 0.6, 0.3]) * 20_000).pvalue > 0.001


def test_fixed_unit_keeps_its_arm_whatever_the_decision_id() -> None:
    policy = FixedPolicy((0.25, 0.25, 0.25, 0.25))
    state = policy.initial_state()
    for unit in ("alice", "bob", "carol", "🎲"):
        arms = {
            policy.choose(state, salt="exp-1", unit_id=unit, decision_id=f"d-{i}").arm
            for i in range(50)
        }
        assert len(arms) == 1


def test_fixed_policy_never_learns() -> None:
    policy = FixedPolicy((0.7, 0.3))
    assert policy.update([ArmStats(100, 0.0, 0.0), ArmStats(100, 100.0, 100.0)]).probabilities == (
        0.7,
        0.3,
    )


def test_fixed_unit_lands_in_its_pinned_arm() -> None:
    # bucket("exp-1", "user-1") = 0.8067 (pinned in test_hashing): third range of 0.2/0.3/0.5.
    policy = FixedPolicy((0.2, 0.3, 0.5))
    choice = policy.choose(policy.initial_state(), salt="exp-1", unit_id="user-1", decision_id="x")
    assert (choice.arm, choice.propensity) == (2, 0.5)


@pytest.mark.parametrize("policy", [*BANDITS, FixedPolicy((0.5, 0.3, 0.2))], ids=ids)
def test_same_salt_decision_and_state_replay_the_same_choice(policy: Policy) -> None:
    state = policy.update(LEARNED)
    # Replay as the service would: state reloaded from its JSON, policy rebuilt from config.
    reloaded = PolicyState.from_json(json.loads(json.dumps(state.to_json())))
    for i in range(200):
        first = policy.choose(state, salt="exp-1", unit_id=f"u{i}", decision_id=f"d{i}")
        again = policy.choose(reloaded, salt="exp-1", unit_id=f"u{i}", decision_id=f"d{i}")
        assert first == again


def test_bandit_draw_for_a_decision_id_is_pinned() -> None:
    # decision_uniform("exp-1", "decision-1") = 0.5413 and "decision-2" gives 0.8678 (pinned
    # in test_hashing): with (0.6, 0.3, 0.1) they fall in arms 0 and 1.
    policy = ThompsonPolicy(3)
    state = PolicyState((0.6, 0.3, 0.1))
    picks = [
        policy.choose(state, salt="exp-1", unit_id="u", decision_id=d).arm
        for d in ("decision-1", "decision-2")
    ]
    assert picks == [0, 1]


@pytest.mark.parametrize(
    ("policy", "gaussian", "best_share"),
    [
        (ThompsonPolicy(3), False, 0.97),
        (ThompsonPolicy(3, reward="gaussian"), True, 0.97),
        (EpsilonGreedyPolicy(3), False, 1 - 0.1 + 0.1 / 3),
        (UCB1Policy(3), False, 0.98),
    ],
    ids=["thompson", "thompson-gaussian", "epsilon_greedy", "ucb1"],
)
def test_bandit_moves_allocation_to_the_clearly_better_arm_and_keeps_the_floor(
    policy: Policy, gaussian: bool, best_share: float
) -> None:
    # Arm 2 is better by 0.3 (3000 seeded decisions in 15 learning batches).
    state, pulls = simulate(policy, [0.1, 0.2, 0.5], gaussian=gaussian)
    floor = getattr(policy, "min_probability", getattr(policy, "epsilon", 0.0) / 3)
    assert state.probabilities[2] >= best_share
    assert min(state.probabilities) >= floor
    assert pulls[2] > 0.8 * pulls.sum()


@pytest.mark.parametrize("policy", [*BANDITS, FixedPolicy((0.5, 0.3, 0.2))], ids=ids)
def test_initial_state_splits_bandits_equally(policy: Policy) -> None:
    state = policy.initial_state()
    if policy.kind == "fixed":
        assert state.probabilities == (0.5, 0.3, 0.2)
    else:
        assert state.probabilities == pytest.approx([1 / 3] * 3, abs=1e-15)


@pytest.mark.parametrize("policy", [*BANDITS, FixedPolicy((0.5, 0.3, 0.2))], ids=ids)
def test_state_round_trips_through_json(policy: Policy) -> None:
    state = policy.update(LEARNED)
    text = json.dumps(state.to_json(), allow_nan=False)  # details are plain JSON: no NaN/inf
    assert PolicyState.from_json(json.loads(text)) == state


@pytest.mark.parametrize("policy", BANDITS, ids=ids)
def test_statistics_for_the_wrong_number_of_arms_are_rejected(policy: Policy) -> None:
    with pytest.raises(ValueError, match=r"one entry per arm \(3\), got 2"):
        policy.update(LEARNED[:2])


def test_bernoulli_posterior_adds_successes_and_failures_to_the_prior() -> None:
    state = ThompsonPolicy(2, prior_alpha=0.5, prior_beta=2.0).update(
        [ArmStats(10, 4.0, 4.0), ArmStats(3, 3.0, 3.0)]
    )
    assert state.details["alpha"] == [4.5, 3.5]
    assert state.details["beta"] == [8.0, 2.0]
    p_best = np.array(state.details["p_best"])
    assert np.array(state.probabilities) == pytest.approx(0.01 + 0.98 * p_best, abs=1e-15)


@pytest.mark.parametrize(
    ("arm_stats", "problem"),
    [
        (ArmStats(5, 7.0, 7.0), "arm 1 has total reward 7 over 5 observations"),
        (ArmStats(5, -1.0, 1.0), "arm 1 has total reward -1 over 5 observations"),
        (
            ArmStats(2, 1.0, 5.0),
            "arm 1 has sum of squared rewards 5 for total 1 over 2 observations",
        ),
    ],
)
def test_bernoulli_rejects_rewards_outside_zero_one(arm_stats: ArmStats, problem: str) -> None:
    with pytest.raises(PolicyConfigError) as error:
        ThompsonPolicy(2).update([ArmStats(3, 1.0, 1.0), arm_stats])
    assert error.value.field == "reward"
    assert error.value.message == (
        f"reward 'bernoulli' needs every reward in [0, 1], but {problem}; "
        "use reward 'gaussian' for other rewards"
    )


def test_bernoulli_accepts_fractional_rewards_and_sql_rounding() -> None:
    # Rewards 0.5, 0.5 (sum of squares 0.5) and a total a rounding error above the count.
    state = ThompsonPolicy(2).update([ArmStats(2, 1.0, 0.5), ArmStats(3, 3.0 + 1e-12, 3.0)])
    assert state.details["beta"][1] == 1.0


def test_gaussian_arms_without_a_variance_are_explored_first() -> None:
    # Arms 0 and 1 have < 2 observations: they share everything above the floor.
    state = ThompsonPolicy(3, reward="gaussian").update(
        [ArmStats(), ArmStats(1, 5.0, 25.0), ArmStats(50, 100.0, 250.0)]
    )
    assert state.probabilities == pytest.approx([0.495, 0.495, 0.01], abs=1e-15)
    assert state.details["warm_up"] is True
    assert state.details["sd"] == [None, None, pytest.approx(math.sqrt(50 / 49 / 50))]


def test_gaussian_posterior_is_normal_with_plug_in_variance() -> None:
    # Arm 0: n = 4, rewards 1, 2, 3, 4: mean 2.5, s^2 = 5/3, posterior sd sqrt(5/3/4).
    state = ThompsonPolicy(2, reward="gaussian").update(
        [ArmStats(4, 10.0, 30.0), ArmStats(9, 18.0, 45.0)]
    )
    assert state.details["mean"] == [2.5, 2.0]
    assert state.details["sd"] == pytest.approx([math.sqrt(5 / 3 / 4), math.sqrt(9 / 8 / 9)])
    # P(arm 0 best) = Phi((2.5 - 2) / sqrt(sd0^2 + sd1^2)).
    expected = stats.norm.cdf(0.5 / math.sqrt(5 / 12 + 1 / 8))
    assert state.details["p_best"][0] == pytest.approx(expected, abs=1e-6)


def test_gaussian_arm_with_constant_rewards_borrows_the_pooled_variance() -> None:
    # Arm 0 saw 3.0 twice (s^2 = 0); arm 1 has s^2 = 2 over 5 observations: pooled
    # (1 * 0 + 4 * 2) / 5 = 1.6, so arm 0's sd is sqrt(1.6 / 2), not 0.
    state = ThompsonPolicy(2, reward="gaussian").update(
        [ArmStats(2, 6.0, 18.0), ArmStats(5, 10.0, 28.0)]
    )
    assert state.details["sd"] == pytest.approx([math.sqrt(0.8), math.sqrt(2 / 5)])


def test_gaussian_arms_with_identical_constant_rewards_split_equally() -> None:
    state = ThompsonPolicy(3, reward="gaussian").update([ArmStats(5, 0.0, 0.0)] * 3)
    assert state.probabilities == pytest.approx([1 / 3] * 3, abs=1e-12)


def test_gaussian_arms_with_different_constant_rewards_pick_the_higher() -> None:
    state = ThompsonPolicy(2, reward="gaussian").update(
        [ArmStats(5, 5.0, 5.0), ArmStats(5, 10.0, 20.0)]
    )
    assert state.probabilities == pytest.approx([0.01, 0.99], abs=1e-12)


def test_epsilon_greedy_counts_untried_arms_as_tied_best() -> None:
    state = EpsilonGreedyPolicy(3, epsilon=0.3).update(
        [ArmStats(10, 5.0, 5.0), ArmStats(), ArmStats(10, 2.0, 2.0)]
    )
    assert state.probabilities == pytest.approx([0.1 + 0.35, 0.1 + 0.35, 0.1], abs=1e-15)
    assert state.details["best_arms"] == [0, 1]


def test_epsilon_greedy_splits_ties_equally() -> None:
    # 1/3 and 2/6 are the same double.
    exact = EpsilonGreedyPolicy(3, epsilon=0.3).update(
        [ArmStats(3, 1.0, 1.0), ArmStats(6, 2.0, 2.0), ArmStats(4, 1.0, 1.0)]
    )
    assert exact.probabilities == pytest.approx([0.45, 0.45, 0.1], abs=1e-15)
    # 0.1 + 0.2 and 0.3 differ by one rounding step only: still a tie.
    rounded = EpsilonGreedyPolicy(3, epsilon=0.3).update(
        [ArmStats(1, 0.1 + 0.2, 0.09), ArmStats(1, 0.3, 0.09), ArmStats(1, 0.2, 0.04)]
    )
    assert rounded.probabilities == pytest.approx([0.45, 0.45, 0.1], abs=1e-15)


def test_ucb1_plays_untried_arms_first() -> None:
    state = UCB1Policy(3).update([ArmStats(10, 9.0, 9.0), ArmStats(), ArmStats()])
    assert state.probabilities == pytest.approx([0.01, 0.495, 0.495], abs=1e-15)
    assert state.details["index"] == [
        pytest.approx(0.9 + math.sqrt(2 * math.log(10) / 10)),
        None,
        None,
    ]


def test_ucb1_gives_all_but_the_floor_to_the_top_index() -> None:
    # N = 110: index_0 = 0.5 + sqrt(2 ln 110 / 100) = 0.807, index_1 = 0.3 + sqrt(2 ln 110 / 10)
    # = 1.270: the less-tried arm leads despite its lower mean.
    state = UCB1Policy(2, min_probability=0.05).update(
        [ArmStats(100, 50.0, 50.0), ArmStats(10, 3.0, 3.0)]
    )
    assert state.details["index"] == pytest.approx(
        [0.5 + math.sqrt(2 * math.log(110) / 100), 0.3 + math.sqrt(2 * math.log(110) / 10)]
    )
    assert state.probabilities == pytest.approx([0.05, 0.95], abs=1e-15)


def bernoulli_stats(draw: st.DrawFn, n_arms: int) -> list[ArmStats]:
    result = []
    for _ in range(n_arms):
        count = draw(st.integers(0, 10**7))
        successes = draw(st.integers(0, count))
        result.append(ArmStats(count, float(successes), float(successes)))
    return result


@st.composite
def bandit_case(draw: st.DrawFn) -> tuple[Policy, list[ArmStats]]:
    n_arms = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["thompson", "gaussian", "epsilon_greedy", "ucb1"]))
    floor = draw(st.floats(1e-4, 1.0 / n_arms))
    if kind == "thompson":
        return ThompsonPolicy(n_arms, min_probability=floor), bernoulli_stats(draw, n_arms)
    arms = []
    for _ in range(n_arms):
        count = draw(st.integers(0, 10**6))
        mean = draw(st.floats(-1e3, 1e3))
        variance = draw(st.sampled_from([0.0, 1e-6, 1.0, 1e4]))
        arms.append(ArmStats(count, count * mean, count * (variance + mean * mean)))
    policy: Policy
    if kind == "gaussian":
        policy = ThompsonPolicy(n_arms, reward="gaussian", min_probability=floor)
    elif kind == "epsilon_greedy":
        policy = EpsilonGreedyPolicy(n_arms, epsilon=min(1.0, floor * n_arms))
    else:
        policy = UCB1Policy(n_arms, min_probability=floor)
    return policy, arms


@settings(max_examples=150, deadline=None)
@given(case=bandit_case())
def test_every_allocation_is_a_valid_vector_above_the_floor(
    case: tuple[Policy, list[ArmStats]],
) -> None:
    policy, arm_stats = case
    state = policy.update(arm_stats)
    p = np.array(state.probabilities)
    floor = getattr(policy, "min_probability", getattr(policy, "epsilon", 0.0) / policy.n_arms)
    assert p.shape == (policy.n_arms,)
    assert np.all(p >= floor)
    assert abs(math.fsum(state.probabilities) - 1.0) <= 1e-9
    json.dumps(state.to_json(), allow_nan=False)
    choice = policy.choose(state, salt="prop", unit_id="u", decision_id="d")
    assert choice.propensity == state.probabilities[choice.arm]


def test_build_policy_gives_the_documented_defaults() -> None:
    assert build_policy("thompson", {}, n_arms=4) == ThompsonPolicy(4, "bernoulli", 0.01, 1.0, 1.0)
    assert build_policy("epsilon_greedy", {}, n_arms=4) == EpsilonGreedyPolicy(4, 0.1)
    assert build_policy("ucb1", {}, n_arms=4) == UCB1Policy(4, 0.01, math.sqrt(2))
    assert build_policy("fixed", {}, n_arms=4) == FixedPolicy((0.25,) * 4)
    assert build_policy("fixed", {}, n_arms=2, weights=[0.9, 0.1]) == FixedPolicy((0.9, 0.1))


@pytest.mark.parametrize(
    ("probabilities", "message"),
    [
        ((), "non-empty"),
        ((0.5, 0.6), "sum to 1"),
        ((1.2, -0.2), "finite and >= 0"),
        ((float("nan"), 1.0), "finite and >= 0"),
    ],
)
def test_a_state_with_an_invalid_vector_cannot_be_built(
    probabilities: tuple[float, ...], message: str
) -> None:
    # Validated once at construction, which is why choosing may trust the vector.
    with pytest.raises(ValueError, match=message):
        PolicyState(probabilities)


def test_a_state_for_the_wrong_number_of_arms_is_refused_when_choosing() -> None:
    with pytest.raises(ValueError, match="one entry per arm"):
        ThompsonPolicy(3).choose(PolicyState((0.5, 0.5)), salt="s", unit_id="u", decision_id="d")


def test_greedy_exists_only_by_explicit_opt_in_and_never_through_build_policy() -> None:
    # The feedback-loop study needs a policy that never explores; the service must never get one.
    with pytest.raises(PolicyConfigError, match="epsilon must be in"):
        EpsilonGreedyPolicy(3, epsilon=0.0)
    with pytest.raises(PolicyConfigError, match="allow_greedy is not a parameter"):
        build_policy("epsilon_greedy", {"epsilon": 0.0, "allow_greedy": True}, n_arms=3)
    greedy = EpsilonGreedyPolicy(3, epsilon=0.0, allow_greedy=True)
    state = greedy.update([ArmStats(10, 2.0, 2.0), ArmStats(10, 5.0, 5.0), ArmStats(10, 1.0, 1.0)])
    assert state.probabilities == (0.0, 1.0, 0.0)
