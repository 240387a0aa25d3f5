"""Allocation vectors: validation, the exploration floor, and inverse-CDF arm picking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from app.bandits.allocation import (
    apply_floor,
    arm_for_bucket,
    arms_for_uniforms,
    sample_arm,
    sampled_choice,
    tied_for_top,
    validate_probabilities,
)


def test_floor_mixes_in_the_uniform_allocation() -> None:
    # q = f + (1 - K f) p with f = 0.05, K = 4: 0.05 + 0.8 p.
    q = apply_floor([0.0, 0.25, 0.75, 0.0], 0.05)
    assert q.tolist() == pytest.approx([0.05, 0.25, 0.65, 0.05], abs=1e-15)
    assert q.sum() == pytest.approx(1.0, abs=1e-15)


def test_floor_at_one_over_k_gives_the_uniform_allocation() -> None:
    assert apply_floor([1.0, 0.0, 0.0], 1 / 3).tolist() == pytest.approx([1 / 3] * 3)


def test_floor_larger_than_one_over_k_is_rejected_with_the_numbers() -> None:
    with pytest.raises(ValueError) as error:
        apply_floor([0.5, 0.3, 0.2], 0.6)
    assert str(error.value) == "min_probability * number of arms must be <= 1, got 0.6 * 3 = 1.8"


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([], "probabilities must be a non-empty 1-d sequence, got shape (0,)"),
        ([0.5, float("nan"), 0.5], "probabilities must be finite, got [0.5, nan, 0.5]"),
        ([1.2, -0.2], "probabilities must be >= 0, got [1.2, -0.2]"),
        ([0.5, 0.4], "probabilities must sum to 1, got 0.9"),
    ],
)
def test_invalid_probability_vector_is_rejected(vector: list[float], message: str) -> None:
    with pytest.raises(ValueError) as error:
        validate_probabilities(vector)
    assert str(error.value) == message


def test_probability_vector_summing_to_one_within_1e9_is_accepted() -> None:
    validate_probabilities([0.5, 0.5 + 5e-10])
    with pytest.raises(ValueError, match="sum to 1"):
        validate_probabilities([0.5, 0.5 + 5e-9])


def test_bucket_maps_to_cumulative_weight_ranges() -> None:
    weights = [0.25, 0.25, 0.5]
    assert [arm_for_bucket(u, weights) for u in (0.0, 0.2499, 0.25, 0.4999, 0.5, 0.9999)] == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


def test_bucket_above_a_rounded_down_total_goes_to_the_last_positive_arm() -> None:
    # 0.1 * 10 in doubles sums to 0.9999999999999999; u above that must not fall off the end,
    # and an arm of weight 0 (empty range) is never chosen.
    weights = [0.1] * 10 + [0.0]
    assert sum(weights) < 1.0
    assert arm_for_bucket(1.0 - 2**-53, weights) == 9


def test_zero_weight_arm_is_never_chosen() -> None:
    assert {arm_for_bucket(u, [0.5, 0.0, 0.5]) for u in np.linspace(0, 0.999, 1000)} == {0, 2}


def test_bucket_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="u must be in"):
        arm_for_bucket(1.0, [1.0])


def test_sampled_arm_frequencies_match_probabilities() -> None:
    # Chi-square goodness of fit, seeded: a correct sampler fails once in 1000 seeds.
    p = np.array([0.1, 0.2, 0.3, 0.4])
    rng = np.random.default_rng(20240601)
    counts = np.bincount([sample_arm(p, rng) for _ in range(20_000)], minlength=4)
    assert stats.chisquare(counts, p * counts.sum()).pvalue > 0.001


def test_sampled_choice_reports_the_exact_propensity() -> None:
    choice = sampled_choice((0.2, 0.8), n_arms=2, salt="exp", decision_id="d-1")
    assert choice.propensity == choice.probabilities[choice.arm]
    assert choice == sampled_choice((0.2, 0.8), n_arms=2, salt="exp", decision_id="d-1")


def test_sampled_choice_rejects_state_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"one entry per arm \(3\), got 2"):
        sampled_choice((0.2, 0.8), n_arms=3, salt="exp", decision_id="d-1")


def test_scores_within_rounding_are_tied() -> None:
    scores = np.array([0.3, 0.1 + 0.2, 0.29, 5.0])
    known = np.array([True, True, True, False])
    assert tied_for_top(scores, known).tolist() == [True, True, False, False]
    assert not tied_for_top(scores, np.zeros(4, dtype=bool)).any()


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(st.floats(0.0, 1e6), min_size=1, max_size=30).filter(lambda w: sum(w) > 0),
    share=st.floats(0.0, 1.0),
)
def test_floored_allocation_is_a_valid_vector_above_the_floor(
    raw: list[float], share: float
) -> None:
    p = np.array(raw) / sum(raw)
    p = p / p.sum()
    floor = share / len(raw)
    q = apply_floor(p, floor)
    assert np.all(q >= floor)
    assert abs(q.sum() - 1.0) <= 1e-9
    # Order-preserving: the floor never changes which arm is ahead.
    assert np.all(np.diff(q)[np.diff(p) > 0] >= 0)


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1.0)), min_size=1, max_size=8
    ).filter(lambda w: sum(w) > 0),
    u=st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
            st.just(1.0 - 2.0**-53),
            st.just(0.0),
        ),
        min_size=1,
        max_size=50,
    ),
)
def test_arms_for_uniforms_is_arm_for_bucket_element_by_element(
    weights: list[float], u: list[float]
) -> None:
    # Including cumulative ranges that end a hair below 1 and weights of 0: the vectorised rule
    # the simulations use must pick exactly the arm the service's rule picks.
    total = sum(weights)
    w = [x / total for x in weights]
    assert arms_for_uniforms(u, w).tolist() == [arm_for_bucket(x, w) for x in u]


def test_arms_for_uniforms_boundaries_and_bad_input() -> None:
    w = [0.2, 0.0, 0.3, 0.5, 0.0]
    # u exactly on a cumulative boundary belongs to the next positive arm: [c_{i-1}, c_i).
    assert arms_for_uniforms([0.0, 0.2, 0.5, 0.9999999], w).tolist() == [0, 2, 3, 3]
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        arms_for_uniforms([1.0], w)
    with pytest.raises(ValueError, match="positive entry"):
        arms_for_uniforms([0.5], [0.0, 0.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        arms_for_uniforms([0.5], [0.5, -0.5, 1.0])
