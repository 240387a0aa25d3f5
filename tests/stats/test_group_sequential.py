"""Group-sequential designs against published tables, a seeded simulation, and properties.

Published values are matched to the decimals they are printed with: a computed value must
round to the published one, up to the integration error (NUMERICAL, measured against a grid
with r = 64). Values printed to 7-8 significant digits (rpact's tests) are matched to 2e-5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from app.stats.group_sequential import (
    Decision,
    GroupSequentialDesign,
    boundary_crossing_probabilities,
    spending_function,
)
from app.stats.sufficient import StatsInputError

NUMERICAL = 1e-5
"""Allowance for the recursion's integration error (measured: < 2e-6 against r = 64)."""


def assert_rounds_to(computed: npt.ArrayLike, published: Sequence[float], decimals: int) -> None:
    """Each computed value rounds to the published one at the published number of decimals."""
    tolerance = 0.5 * 10.0**-decimals + NUMERICAL
    values = np.asarray(computed, dtype=np.float64)
    gap = np.abs(values - np.asarray(published))
    assert (gap <= tolerance).all(), f"computed {np.round(values, decimals + 3)}, gaps {gap}"


def inflation_and_expected_sizes(
    design: GroupSequentialDesign, beta: float, multiples: Sequence[float]
) -> tuple[float, list[float]]:
    """gsDesign's n.I[K] and en for n.fix = 1: the maximum and expected sample sizes as
    multiples of a fixed-sample test with one-sided alpha/sides and power 1 - beta, the
    expected ones at theta = multiple * (the drift the design is powered for)."""
    theta = design.drift_for_power(1.0 - beta)
    fixed = stats.norm.isf(design.alpha / design.sides) + stats.norm.isf(beta)
    ratio = (theta / fixed) ** 2
    expected = [
        ratio * design.crossing_probabilities(m * theta).expected_fraction for m in multiples
    ]
    return ratio, expected


# --- Published tables ----------------------------------------------------------------------


def test_lan_demets_obrien_fleming_matches_the_ldbounds_vignette() -> None:
    # ldbounds vignette (Casper, Cook & Perez; Reboussin et al. 2000 example): ldBounds(5),
    # two-sided alpha 0.05 (0.025 per side), O'Brien-Fleming-type spending.
    design = GroupSequentialDesign.lan_demets(5, alpha=0.05, sides=2)
    assert_rounds_to(design.upper, [4.8769, 3.3569, 2.6803, 2.2898, 2.0310], decimals=3)
    # To 4 decimals every bound but the second agrees too; ldbounds' coarser integration
    # prints 3.3569 where rpact-grade accuracy (see the rpact tests below) gives 3.35701.
    assert_rounds_to(design.upper[[0, 2, 3, 4]], [4.8769, 2.6803, 2.2898, 2.0310], decimals=4)
    np.testing.assert_array_equal(design.lower, -design.upper)


# Jennison & Turnbull (2000), Table 2.1: Pocock's (1977) C_P(K, alpha), two-sided alpha,
# K = 1..10 equally spaced looks.
POCOCK_CONSTANTS = {
    0.01: [2.576, 2.772, 2.873, 2.939, 2.986, 3.023, 3.053, 3.078, 3.099, 3.117],
    0.05: [1.960, 2.178, 2.289, 2.361, 2.413, 2.453, 2.485, 2.512, 2.535, 2.555],
    0.10: [1.645, 1.875, 1.992, 2.067, 2.122, 2.164, 2.197, 2.225, 2.249, 2.270],
}


@pytest.mark.parametrize("alpha", sorted(POCOCK_CONSTANTS))
def test_classical_pocock_matches_jennison_turnbull_table_2_1(alpha: float) -> None:
    constants = [
        GroupSequentialDesign.classical(k, alpha=alpha, sides=2, kind="pocock").upper[0]
        for k in range(1, 11)
    ]
    assert_rounds_to(constants, POCOCK_CONSTANTS[alpha], decimals=3)


def test_classical_obrien_fleming_matches_jennison_turnbull_table_2_3() -> None:
    # J&T (2000) Table 2.3: C_B(K, 0.05), two-sided; the boundary is C_B * sqrt(K / k).
    published = [1.960, 1.977, 2.004, 2.024, 2.040, 2.053, 2.063, 2.072, 2.080, 2.087]
    designs = [GroupSequentialDesign.classical(k, kind="obrien_fleming") for k in range(1, 11)]
    assert_rounds_to([d.upper[-1] for d in designs], published, decimals=3)
    five = designs[4]
    k = np.arange(1, 6)
    np.testing.assert_allclose(five.upper, five.upper[-1] * np.sqrt(5 / k), rtol=1e-12)


def test_classical_obrien_fleming_matches_gsdesign_deming_example() -> None:
    # gsDesign tests/testthat/test-outputs.R, test.Deming.OFbound (Anderson 2008, slides 23-24):
    # gsDesign(k = 4, test.type = 2, sfu = "OF") -> 4.05, 2.86, 2.34, 2.02.
    design = GroupSequentialDesign.classical(4, alpha=0.05, sides=2, kind="obrien_fleming")
    assert_rounds_to(design.upper, [4.05, 2.86, 2.34, 2.02], decimals=2)


# rpact tests/testthat/test-f_design_group_sequential.R (one-sided designs, printed to 8
# significant digits): (design, critical values, cumulative alpha spent).
RPACT_DESIGNS: list[tuple[str, Callable[[], GroupSequentialDesign], list[float], list[float]]] = [
    (
        # x0 <- getDesignInverseNormal(): kMax = 3, alpha = 0.025, typeOfDesign = "OF".
        "x0 classical OF",
        lambda: GroupSequentialDesign.classical(3, 0.025, sides=1, kind="obrien_fleming"),
        [3.4710914, 2.4544323, 2.0040356],
        [0.00025917372, 0.0071600594, 0.02499999],
    ),
    (
        # x6a: typeOfDesign = "asP", alpha = 0.13, informationRates = c(0.35, 0.7, 1),
        # non-binding futility (the efficacy bounds ignore it).
        "x6a asP",
        lambda: GroupSequentialDesign.lan_demets([0.35, 0.7, 1], 0.13, 1, "pocock"),
        [1.5446617, 1.4828682, 1.4620058],
        [0.061214062, 0.10266465, 0.13],
    ),
    (
        # x7a (kMax = 3): typeOfDesign = "asOF", alpha = 0.13, c(0.4, 0.75, 1), non-binding.
        "x7a asOF K=3",
        lambda: GroupSequentialDesign.lan_demets([0.4, 0.75, 1], 0.13, 1, "obrien_fleming"),
        [2.1280732, 1.4368565, 1.2468994],
        [0.016665509, 0.080406163, 0.12999999],
    ),
    (
        # x7a (kMax = 4): the same with c(0.4, 0.75, 0.85, 1).
        "x7a asOF K=4",
        lambda: GroupSequentialDesign.lan_demets([0.4, 0.75, 0.85, 1], 0.13, 1),
        [2.1280732, 1.4368565, 1.422873, 1.2970881],
        [0.016665509, 0.080406163, 0.10053322, 0.13],
    ),
    (
        # x3: typeOfDesign = "asKD" (Kim-DeMets power family), gammaA = 2.2, alpha = 0.03,
        # informationRates = c(0.3, 0.7, 1), non-binding beta spending.
        "x3 asKD rho=2.2",
        lambda: GroupSequentialDesign.lan_demets([0.3, 0.7, 1], 0.03, 1, "power", rho=2.2),
        [2.8594012, 2.2435708, 1.9735737],
        [0.0021222083, 0.013687904, 0.03],
    ),
]


@pytest.mark.parametrize(
    ("build", "critical", "cumulative"),
    [case[1:] for case in RPACT_DESIGNS],
    ids=[case[0] for case in RPACT_DESIGNS],
)
def test_one_sided_designs_match_rpact(
    build: Callable[[], GroupSequentialDesign], critical: list[float], cumulative: list[float]
) -> None:
    design = build()
    np.testing.assert_allclose(design.upper, critical, atol=2e-5)
    np.testing.assert_allclose(design.cumulative_alpha, cumulative, atol=1e-7)
    # The boundaries really spend that: recomputed crossing probabilities, not the target.
    achieved = np.cumsum(design.crossing_probabilities(0.0).stop)
    np.testing.assert_allclose(achieved, cumulative, atol=1e-7)
    assert np.isneginf(design.lower).all()


def test_repeated_testing_at_the_fixed_sample_bound_matches_gsdesign() -> None:
    # gsDesign test-outputs.R, test.Deming.gsProb: testing K times at |Z| >= 1.96 crosses the
    # upper bound with probability 0.042, 0.063, 0.097, 0.124 for K = 2, 4, 10, 20 (twice that
    # overall: Armitage, McPherson & Rowe 1969's inflation of repeated significance tests).
    z = stats.norm.isf(0.025)
    upper = [
        boundary_crossing_probabilities(k, np.full(k, z), np.full(k, -z)).upper.sum()
        for k in (2, 4, 10, 20)
    ]
    assert_rounds_to(upper, [0.042, 0.063, 0.097, 0.124], decimals=3)


@pytest.mark.parametrize(
    ("build", "beta", "maximum", "expected"),
    [
        # gsDesign test-outputs.R, test.JT.OFss (which cites J&T 2000 Table 2.8): sfu = "OF".
        (lambda: GroupSequentialDesign.classical(5, kind="obrien_fleming"), 0.2, 1.028, [1.021]),
        (lambda: GroupSequentialDesign.classical(20, kind="obrien_fleming"), 0.1, 1.045, [1.034]),
        # test.JT.Pocock: sfu = "Pocock"; en at theta = delta * (0, 0.5, 1, 1.5).
        (
            lambda: GroupSequentialDesign.classical(4, kind="pocock"),
            0.2,
            1.202,
            [1.175, 1.088, 0.805, 0.522],
        ),
        (
            lambda: GroupSequentialDesign.classical(15, kind="pocock"),
            0.1,
            1.305,
            [1.264, 1.112, 0.664, 0.354],
        ),
        # test.JT.Power.symm: symmetric two-sided sfPower (Kim-DeMets) spending.
        (
            lambda: GroupSequentialDesign.lan_demets(3, spending="power", rho=1.0),
            0.2,
            1.117,
            [1.099, 1.034, 0.812, 0.565],
        ),
        (
            lambda: GroupSequentialDesign.lan_demets(10, spending="power", rho=2.0),
            0.2,
            1.081,
            [1.066, 0.997, 0.762, 0.510],
        ),
        (
            lambda: GroupSequentialDesign.lan_demets(2, spending="power", rho=3.0),
            0.2,
            1.010,
            [1.007, 0.989, 0.895, 0.707],
        ),
    ],
    ids=["OF k5", "OF k20", "Pocock k4", "Pocock k15", "power1 k3", "power2 k10", "power3 k2"],
)
def test_sample_size_ratios_match_gsdesign(
    build: Callable[[], GroupSequentialDesign],
    beta: float,
    maximum: float,
    expected: list[float],
) -> None:
    # gsDesign(test.type = 2, alpha = 0.025 per side) with n.fix = 1: n.I[K] is the maximum
    # and en the expected sample size relative to the fixed design; printed to 0.1 %.
    multiples = [0.0, 0.5, 1.0, 1.5][: len(expected)]
    ratio, sizes = inflation_and_expected_sizes(build(), beta, multiples)
    assert_rounds_to([ratio, *sizes], [maximum, *expected], decimals=3)


@pytest.mark.parametrize(
    ("looks", "delta", "beta", "final_bound", "maximum"),
    [(9, 0.1, 0.1, 2.113, 1.048), (6, 0.25, 0.2, 2.154, 1.077), (7, 0.4, 0.2, 2.313, 1.159)],
)
def test_wang_tsiatis_matches_gsdesign(
    looks: int, delta: float, beta: float, final_bound: float, maximum: float
) -> None:
    # gsDesign test-outputs.R, test.JT.WT: gsDesign(k, test.type = 2, sfu = "WT", sfupar = delta).
    design = GroupSequentialDesign.classical(looks, kind="wang_tsiatis", delta=delta)
    ratio, _ = inflation_and_expected_sizes(design, beta, [])
    assert_rounds_to([design.upper[-1], ratio], [final_bound, maximum], decimals=3)


# --- Seeded simulation ---------------------------------------------------------------------

PATHS = 400_000


def simulate_first_crossings(
    design: GroupSequentialDesign, theta: float, rng: np.random.Generator
) -> np.ndarray:
    """Share of PATHS Brownian-motion paths whose first crossing is at look k (k = 1..K).

    S(t) = W(t) + theta t observed at the fractions; Z_k = S(t_k) / sqrt(t_k)."""
    t = design.information_fractions
    steps = rng.standard_normal((PATHS, t.size)) * np.sqrt(np.diff(t, prepend=0.0))
    z = np.cumsum(steps, axis=1) / np.sqrt(t) + theta * np.sqrt(t)
    crossed = (z >= design.upper) | (z <= design.lower)
    stopped = crossed.any(axis=1)
    first = crossed.argmax(axis=1)[stopped]
    counts: np.ndarray = np.bincount(first, minlength=t.size) / PATHS
    return counts


@pytest.mark.parametrize(
    "build",
    [
        lambda: GroupSequentialDesign.lan_demets(5, alpha=0.05, sides=2),
        lambda: GroupSequentialDesign.lan_demets([0.35, 0.7, 1], 0.13, sides=1, spending="pocock"),
        lambda: GroupSequentialDesign.classical([0.2, 0.45, 0.8, 1], 0.05, sides=2),
    ],
    ids=["LD-OF two-sided K5", "LD-Pocock one-sided unequal", "Pocock two-sided unequal"],
)
def test_simulated_crossings_match_the_recursion(
    build: Callable[[], GroupSequentialDesign],
) -> None:
    # Each look's first-crossing frequency p_k over 400,000 seeded paths has Monte-Carlo
    # standard error sqrt(p_k (1 - p_k) / 400,000) (3.4e-4 for the overall 0.05); we allow
    # 4 of them, so a correct implementation fails a comparison with probability 6.3e-5 and
    # this test (~30 comparisons over its three designs) with probability < 0.002. Under H0
    # the total is the design's alpha: the overall type I error equals nominal alpha.
    design = build()
    rng = np.random.default_rng(20_240_601)
    for theta in (0.0, design.drift_for_power(0.8)):
        computed = design.crossing_probabilities(theta).stop
        simulated = simulate_first_crossings(design, theta, rng)
        for p, q in [(computed, simulated), ([computed.sum()], [simulated.sum()])]:
            p_arr = np.asarray(p)
            error = np.sqrt(p_arr * (1.0 - p_arr) / PATHS)
            assert (np.abs(np.asarray(q) - p_arr) <= 4.0 * error + NUMERICAL).all(), (theta, p, q)
    assert design.crossing_probabilities(0.0).rejection == pytest.approx(design.alpha, abs=1e-9)


# --- Properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("sides", [1, 2])
@pytest.mark.parametrize(
    "build",
    [
        lambda a, s: GroupSequentialDesign.lan_demets(1, a, s, "obrien_fleming"),
        lambda a, s: GroupSequentialDesign.lan_demets(1, a, s, "pocock"),
        lambda a, s: GroupSequentialDesign.lan_demets(1, a, s, "power", rho=2.5),
        lambda a, s: GroupSequentialDesign.classical(1, a, s, "pocock"),
        lambda a, s: GroupSequentialDesign.classical(1, a, s, "obrien_fleming"),
    ],
)
def test_one_look_is_the_fixed_sample_test(
    build: Callable[[float, int], GroupSequentialDesign], sides: int
) -> None:
    for alpha in (0.01, 0.05, 0.2):
        design = build(alpha, sides)
        assert design.upper[0] == pytest.approx(stats.norm.isf(alpha / sides), abs=1e-9)
        assert design.nominal_alpha[0] == pytest.approx(alpha, abs=1e-12)


@pytest.mark.parametrize("looks", range(2, 11))
def test_obrien_fleming_boundaries_fall_and_pocock_ones_stay_level(looks: int) -> None:
    ld_of = GroupSequentialDesign.lan_demets(looks, spending="obrien_fleming").upper
    ld_pocock = GroupSequentialDesign.lan_demets(looks, spending="pocock").upper
    classical_pocock = GroupSequentialDesign.classical(looks, kind="pocock").upper
    assert (np.diff(ld_of) < 0).all()
    # Lan-DeMets' Pocock-type spending only approximates a constant boundary: its bounds
    # spread by 0.02-0.05 for K = 2..5 (rising slightly for K <= 3) and up to 0.18 at K = 10,
    # against 0.99 (K = 2) to 4.9 (K = 10) for O'Brien-Fleming-type spending.
    assert ld_pocock.max() - ld_pocock.min() < 0.2
    assert ld_of[0] - ld_of[-1] > 0.9
    np.testing.assert_array_equal(classical_pocock, classical_pocock[0])


def test_a_later_look_does_not_move_earlier_spending_boundaries() -> None:
    # Each boundary depends only on the fractions up to its look (Lan & DeMets 1983): this is
    # what lets an analyst add or move later looks. rpact's x7a K=3 and K=4 share two bounds.
    three = GroupSequentialDesign.lan_demets([0.2, 0.5, 1.0], spending="pocock")
    five = GroupSequentialDesign.lan_demets([0.2, 0.5, 0.7, 0.9, 1.0], spending="pocock")
    np.testing.assert_allclose(three.upper[:2], five.upper[:2], rtol=1e-12)


def test_two_sided_alpha_is_split_evenly_between_the_sides() -> None:
    design = GroupSequentialDesign.lan_demets(4, alpha=0.05, sides=2, spending="pocock")
    null = design.crossing_probabilities(0.0)
    np.testing.assert_allclose(null.upper, null.lower, atol=1e-12)
    assert null.upper.sum() == pytest.approx(0.025, abs=1e-9)
    # and each side spends its 0.025 through the one-sided function (ldbounds, gsDesign)
    expected = 2 * spending_function("pocock", 0.025)(design.information_fractions)
    np.testing.assert_allclose(design.cumulative_alpha, expected, rtol=1e-12)


def test_negative_drift_mirrors_positive_drift_in_a_symmetric_design() -> None:
    design = GroupSequentialDesign.classical(5, kind="obrien_fleming")
    up, down = design.crossing_probabilities(1.7), design.crossing_probabilities(-1.7)
    np.testing.assert_allclose(up.upper, down.lower, atol=1e-12)
    np.testing.assert_allclose(up.lower, down.upper, atol=1e-12)


def test_power_grows_with_drift_and_expected_information_shrinks() -> None:
    design = GroupSequentialDesign.lan_demets(5, spending="power", rho=2.0)
    results = [design.crossing_probabilities(theta) for theta in np.linspace(0.0, 5.0, 11)]
    power = [r.upper.sum() for r in results]
    expected = [r.expected_fraction for r in results]
    assert (np.diff(power) > 0).all()
    assert (np.diff(expected) < 0).all()
    assert power[0] == pytest.approx(0.025, abs=1e-9)
    theta = design.drift_for_power(0.9)
    assert design.crossing_probabilities(theta).upper.sum() == pytest.approx(0.9, abs=1e-9)


@pytest.mark.parametrize(
    "build",
    [
        lambda: GroupSequentialDesign.classical(6, 0.05, 2, "pocock"),
        lambda: GroupSequentialDesign.classical([0.1, 0.3, 1.0], 0.025, 1, "obrien_fleming"),
        lambda: GroupSequentialDesign.classical(4, 0.1, 2, "wang_tsiatis", delta=0.25),
        lambda: GroupSequentialDesign.lan_demets([0.05, 0.6, 1.0], 0.01, 2, "obrien_fleming"),
    ],
)
def test_the_whole_alpha_is_spent_by_the_last_look(
    build: Callable[[], GroupSequentialDesign],
) -> None:
    design = build()
    assert design.cumulative_alpha[-1] == pytest.approx(design.alpha, abs=1e-6)
    assert design.crossing_probabilities().rejection == pytest.approx(design.alpha, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    gaps=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=6),
    alpha=st.floats(0.001, 0.3),
    sides=st.sampled_from([1, 2]),
    kind=st.sampled_from(["obrien_fleming", "pocock", "power"]),
    rho=st.floats(0.5, 4.0),
)
def test_each_look_spends_what_the_spending_function_allots(
    gaps: list[float], alpha: float, sides: int, kind: str, rho: float
) -> None:
    fractions = np.cumsum(gaps) / np.sum(gaps)
    design = GroupSequentialDesign.lan_demets(
        list(fractions), alpha, sides, kind, rho if kind == "power" else None
    )
    allotted = sides * spending_function(kind, alpha / sides, rho if kind == "power" else None)(
        design.information_fractions
    )
    np.testing.assert_allclose(design.cumulative_alpha, allotted, rtol=1e-12, atol=1e-15)
    recomputed = boundary_crossing_probabilities(fractions, design.upper, design.lower).stop
    np.testing.assert_allclose(np.cumsum(recomputed), allotted, atol=1e-9)


def test_spending_functions_start_at_zero_and_end_at_alpha() -> None:
    t = np.linspace(0.0, 1.0, 101)
    for kind, rho in [("obrien_fleming", None), ("pocock", None), ("power", 0.5)]:
        spent = spending_function(kind, 0.05, rho)(t)
        assert spent[0] == 0.0
        assert spent[-1] == pytest.approx(0.05, rel=1e-14)
        assert (np.diff(spent) > 0).all()
    # Lan & DeMets (1983)'s O'Brien-Fleming type at t = 1/4: 2 - 2 Phi(2 z_{0.975}).
    quarter = spending_function("obrien_fleming", 0.05)(0.25)
    assert quarter == pytest.approx(2 * stats.norm.sf(2 * stats.norm.isf(0.025)), rel=1e-12)


def test_a_look_with_nothing_to_spend_cannot_reject() -> None:
    # O'Brien-Fleming-type spending by t = 0.001 underflows to 0: no finite bound spends it.
    design = GroupSequentialDesign.lan_demets([0.001, 1.0])
    assert design.upper[0] == math.inf
    assert design.decide(1, 50.0) is Decision.CONTINUE
    assert design.upper[1] == pytest.approx(stats.norm.isf(0.025), abs=1e-6)


@pytest.mark.parametrize(
    ("look", "z", "decision"),
    [
        (1, 4.0, Decision.CONTINUE),
        (1, 4.9, Decision.REJECT),
        (1, -4.9, Decision.REJECT),
        (3, 2.5, Decision.CONTINUE),
        (3, -2.7, Decision.REJECT),
        (5, 2.0, Decision.ACCEPT),
        (5, 2.04, Decision.REJECT),
        (5, -2.04, Decision.REJECT),
    ],
)
def test_decide_compares_z_with_the_look_boundary(look: int, z: float, decision: Decision) -> None:
    # Boundaries 4.877, 3.357, 2.680, 2.290, 2.031 (ldbounds vignette).
    design = GroupSequentialDesign.lan_demets(5)
    assert design.decide(look, z) is decision


def test_one_sided_design_never_rejects_for_negative_z() -> None:
    design = GroupSequentialDesign.lan_demets(3, alpha=0.025, sides=1)
    assert design.decide(1, -20.0) is Decision.CONTINUE
    assert design.decide(3, -20.0) is Decision.ACCEPT
    assert design.decide(3, 2.0) is Decision.REJECT


BAD_INPUTS: list[tuple[str, Callable[[], object], str]] = [
    (
        "decreasing fractions",
        lambda: GroupSequentialDesign.lan_demets([0.5, 0.3, 1.0]),
        "information fractions must be strictly increasing, got [0.5, 0.3, 1]",
    ),
    (
        "repeated fraction",
        lambda: GroupSequentialDesign.lan_demets([0.5, 0.5, 1.0]),
        "information fractions must be strictly increasing, got [0.5, 0.5, 1]",
    ),
    (
        "zero fraction",
        lambda: GroupSequentialDesign.classical([0.0, 0.5, 1.0]),
        "information fractions must be in (0, 1], got [0, 0.5, 1]",
    ),
    (
        "fraction above 1",
        lambda: GroupSequentialDesign.lan_demets([0.5, 1.2]),
        "information fractions must be in (0, 1], got [0.5, 1.2]",
    ),
    (
        "nan fraction",
        lambda: GroupSequentialDesign.lan_demets([0.5, math.nan, 1.0]),
        "information fractions must be in (0, 1], got [0.5, nan, 1]",
    ),
    (
        "last fraction below 1",
        lambda: GroupSequentialDesign.lan_demets([0.2, 0.6]),
        "the last information fraction must be 1 (the planned maximum), got 0.6; "
        "divide the planned information of each look by the last one's",
    ),
    (
        "no fractions",
        lambda: GroupSequentialDesign.lan_demets([]),
        "information fractions must not be empty",
    ),
    ("no looks", lambda: GroupSequentialDesign.classical(0), "the number of looks must be >= 1"),
    ("alpha 0", lambda: GroupSequentialDesign.lan_demets(3, alpha=0), "alpha must be in (0, 1)"),
    ("alpha 1", lambda: GroupSequentialDesign.classical(3, alpha=1.0), "alpha must be in (0, 1)"),
    (
        "alpha nan",
        lambda: GroupSequentialDesign.lan_demets(3, alpha=math.nan),
        "alpha must be in (0, 1), got nan",
    ),
    (
        "alpha text",
        lambda: GroupSequentialDesign.lan_demets(3, alpha="0.05"),  # type: ignore[arg-type]
        "alpha must be a number, got '0.05'",
    ),
    (
        "sides 3",
        lambda: GroupSequentialDesign.lan_demets(3, sides=3),
        "sides must be 1 or 2, got 3",
    ),
    (
        "unknown spending",
        lambda: GroupSequentialDesign.lan_demets(3, spending="linear"),
        "unknown spending function 'linear': use one of obrien_fleming, pocock, power",
    ),
    (
        "rho 0",
        lambda: GroupSequentialDesign.lan_demets(3, spending="power", rho=0.0),
        "rho must be > 0, got 0",
    ),
    ("rho negative", lambda: spending_function("power", 0.05, -1.0), "rho must be > 0, got -1"),
    (
        "power without rho",
        lambda: spending_function("power", 0.05),
        "the power family alpha * t^rho needs rho > 0, got none",
    ),
    (
        "rho for another family",
        lambda: GroupSequentialDesign.lan_demets(3, rho=2.0),
        "rho is the power family's exponent; 'obrien_fleming' takes none",
    ),
    (
        "unknown classical",
        lambda: GroupSequentialDesign.classical(3, kind="haybittle_peto"),
        "unknown classical design 'haybittle_peto': use one of pocock, obrien_fleming, "
        "wang_tsiatis",
    ),
    (
        "delta out of range",
        lambda: GroupSequentialDesign.classical(3, kind="wang_tsiatis", delta=0.7),
        "the Wang-Tsiatis shape delta must be in [0, 0.5], got 0.7",
    ),
    (
        "spending outside [0, 1]",
        lambda: spending_function("pocock", 0.05)(1.5),
        "a spending function takes information fractions in [0, 1]",
    ),
    (
        "look 0",
        lambda: GroupSequentialDesign.lan_demets(5).decide(0, 1.0),
        "look must be an integer in 1..5, got 0",
    ),
    (
        "look past the last",
        lambda: GroupSequentialDesign.lan_demets(5).decide(6, 1.0),
        "look must be an integer in 1..5, got 6",
    ),
    (
        "z nan",
        lambda: GroupSequentialDesign.lan_demets(5).decide(2, math.nan),
        "z must be finite, got nan",
    ),
    (
        "power below alpha",
        lambda: GroupSequentialDesign.lan_demets(5).drift_for_power(0.02),
        "power must be in (0.025, 1), got 0.02",
    ),
    (
        "crossed boundaries",
        lambda: boundary_crossing_probabilities(2, [2.0, 1.0], [1.0, 1.5]),
        "each look's lower boundary must be below its upper boundary",
    ),
    (
        "boundary count",
        lambda: boundary_crossing_probabilities(3, [2.0, 2.0]),
        "need one upper and one lower boundary per look (3), got 2 and 3",
    ),
]


@pytest.mark.parametrize(
    ("call", "message"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_inputs_raise_an_actionable_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(StatsInputError, match=re.escape(message)):
        call()


def test_a_look_from_sufficient_statistics_feeds_the_design() -> None:
    from app.stats.group_sequential import look_statistic
    from app.stats.sufficient import SampleStats

    control = SampleStats.from_binary(1000, 100)
    treatment = SampleStats.from_binary(1000, 140)
    look = look_statistic(control, treatment, kind="binary", planned_n=5000)
    # Hand computation: d = 0.04, Var = .1*.9/1000 + .14*.86/1000 = 2.104e-4.
    assert look.estimate == pytest.approx(0.04, abs=1e-15)
    assert look.std_error == pytest.approx(math.sqrt(2.104e-4), rel=1e-12)
    assert look.z == pytest.approx(0.04 / math.sqrt(2.104e-4), rel=1e-12)
    assert look.information_fraction == pytest.approx(0.4)
    design = GroupSequentialDesign.lan_demets([0.4, 0.7, 1.0])
    assert design.decide(1, look.z) is Decision.CONTINUE  # z = 2.758 < 3.357 at t = 0.4
    with pytest.raises(StatsInputError, match="more than planned_n"):
        look_statistic(control, treatment, kind="binary", planned_n=1500)
