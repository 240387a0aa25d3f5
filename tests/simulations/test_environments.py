"""Each environment's ground truth, checked by seeded draws."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.environments import DriftingArms, ScenarioError, SegmentedArms, StationaryArms


def _draws(env: StationaryArms | SegmentedArms, arm: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rounds = np.arange(n)
    segments = env.contexts(rng, 0, n)
    means = env.means(rounds, segments)[:, arm]
    return env.draw(means, env.noise(rng, n))


def test_bernoulli_arms_pay_their_means() -> None:
    env = StationaryArms([0.1, 0.5, 0.9])
    for arm, mean in enumerate([0.1, 0.5, 0.9]):
        y = _draws(env, arm, 100_000, seed=arm)
        assert set(np.unique(y)) <= {0.0, 1.0}
        # 5 binomial standard errors: fails by chance with probability < 1e-6.
        assert abs(y.mean() - mean) < 5 * np.sqrt(mean * (1 - mean) / y.size)


def test_gaussian_arms_have_their_mean_and_sd() -> None:
    env = StationaryArms([10.0, 12.0], reward="gaussian", sd=3.0)
    y = _draws(env, 1, 100_000, seed=7)
    assert abs(y.mean() - 12.0) < 5 * 3.0 / np.sqrt(y.size)
    assert y.std(ddof=1) == pytest.approx(3.0, rel=0.02)


def test_segments_arrive_with_their_weights_and_prefer_different_arms() -> None:
    env = SegmentedArms([[0.12, 0.05], [0.04, 0.11]], segment_weights=[3, 1])
    rng = np.random.default_rng(1)
    segments = env.contexts(rng, 0, 200_000)
    assert np.bincount(segments).tolist() == pytest.approx([150_000, 50_000], rel=0.01)
    means = env.means(np.arange(4), np.array([0, 1, 1, 0]))
    assert means.tolist() == [[0.12, 0.05], [0.04, 0.11], [0.04, 0.11], [0.12, 0.05]]
    # On average (weights 3:1) arm 0 is best, though segment 1 prefers arm 1.
    assert env.average_means(0).tolist() == pytest.approx([0.1, 0.065])


def test_abrupt_drift_switches_at_its_round() -> None:
    env = DriftingArms([0.1, 0.2], [0.3, 0.0], change_at=100)
    means = env.means(np.array([0, 99, 100, 5000]), np.zeros(4, dtype=np.intp))
    assert means.tolist() == [[0.1, 0.2], [0.1, 0.2], [0.3, 0.0], [0.3, 0.0]]


def test_gradual_drift_moves_linearly_over_its_duration() -> None:
    env = DriftingArms([0.1, 0.2], [0.3, 0.0], change_at=100, mode="gradual", duration=100)
    means = env.means(np.array([50, 100, 150, 200, 300]), np.zeros(5, dtype=np.intp))
    assert means[:, 0].tolist() == pytest.approx([0.1, 0.1, 0.2, 0.3, 0.3])
    assert means[:, 1].tolist() == pytest.approx([0.2, 0.2, 0.1, 0.0, 0.0])


@pytest.mark.parametrize(
    ("build", "field", "rule"),
    [
        (lambda: StationaryArms([0.5, 1.5]), "means", "in [0, 1]"),
        (lambda: StationaryArms([]), "means", "non-empty"),
        (lambda: StationaryArms([[0.5]]), "means", "a list of numbers"),
        (lambda: StationaryArms([0.5], reward="poisson"), "reward", "'bernoulli' or"),  # type: ignore[arg-type]
        (lambda: StationaryArms([0.5], reward="gaussian", sd=0), "sd", "> 0"),
        (lambda: SegmentedArms([[0.1, 0.2]], segment_weights=[1, 1]), "segment_weights", "one"),
        (lambda: DriftingArms([0.1], [0.1, 0.2], change_at=5), "end_means", "one entry per arm"),
        (lambda: DriftingArms([0.1], [0.2], change_at=-1), "change_at", ">= 0"),
        (
            lambda: DriftingArms([0.1], [0.2], change_at=5, mode="gradual"),
            "duration",
            "duration >= 1",
        ),
    ],
)
def test_invalid_environments_name_the_setting(build: object, field: str, rule: str) -> None:
    with pytest.raises(ScenarioError) as error:
        build()  # type: ignore[operator]
    assert error.value.field == field
    assert rule in error.value.message
