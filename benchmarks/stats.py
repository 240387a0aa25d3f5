"""Statistics-engine speed, next to the obvious way of computing the same numbers.

    python -m benchmarks.stats [--repeat 50]

1. P(arm is best) for 20 arms: app.stats.p_best (deterministic integration) against seeded
   Monte Carlo with 100,000 posterior draws per arm, the usual approach; time and the largest
   error against a 10-million-draw reference are shown for both.
2. Every statistic of a 20-arm, 10-metric report (5 binary and 5 continuous metrics; each of
   19 treatments against control): fixed-horizon effects and lifts with Holm over all 190,
   mSPRT and asymptotic confidence sequence for each, Bayesian summaries per metric, and the
   SRM check; against the same fixed-horizon tests done one pair at a time with scipy and
   statsmodels.
3. Off-policy evaluation of a 100,000-round, 20-arm bandit log: every arm's IPS value with
   its interval and confidence sequence (`ope.arm_values`), and IPS / SNIPS / DR intervals of
   one target policy; against per-arm IPS means with pandas groupby (no intervals at all).
4. Group-sequential designs: Lan-DeMets O'Brien-Fleming for 5 and 20 looks, and the classical
   Pocock design for 5 (its constant is found by root finding over full recursions).
Times are medians over --repeat runs on this machine, in one process, one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from app.stats import bayes, ope, sequential, srm
from app.stats.fixed_horizon import MetricArms, compare_report
from app.stats.group_sequential import GroupSequentialDesign
from app.stats.p_best import p_best_beta
from app.stats.sufficient import SampleStats

ARMS = 20
METRICS = 10


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of fn() in milliseconds (after one warm-up call)."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def monte_carlo_p_best(alpha: np.ndarray, beta: np.ndarray, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = rng.beta(alpha[:, None], beta[:, None], size=(alpha.size, draws))
    return np.bincount(samples.argmax(axis=0), minlength=alpha.size) / draws


def report_data(seed: int) -> dict[str, MetricArms]:
    rng = np.random.default_rng(seed)
    metrics: dict[str, MetricArms] = {}
    for m in range(METRICS):
        arms = []
        for _ in range(ARMS):
            n = int(rng.integers(9_000, 11_000))
            if m < METRICS // 2:
                arms.append(SampleStats.from_binary(n, int(rng.binomial(n, 0.1))))
            else:
                arms.append(SampleStats.from_values(rng.gamma(2.0, 5.0, size=n)))
        kind = "binary" if m < METRICS // 2 else "continuous"
        metrics[f"m{m}"] = MetricArms(
            kind, arms[0], {f"arm{i}": s for i, s in enumerate(arms[1:], start=1)}
        )
    return metrics


def engine_report(metrics: dict[str, MetricArms]) -> None:
    compare_report(metrics, correction="holm")
    for data in metrics.values():
        planned = 2 * data.control.n
        for treatment in data.treatments.values():
            sequential.msprt(data.control, treatment, planned_n=planned, kind=data.kind)
            sequential.asymptotic_cs(data.control, treatment, planned_n=planned, kind=data.kind)
        bayes_summary(data)
    first = next(iter(metrics.values()))
    counts = [first.control.n, *(s.n for s in first.treatments.values())]
    srm.srm_check(counts, [1 / ARMS] * ARMS)


def bayes_summary(data: MetricArms) -> None:
    bayes.summarize([data.control, *data.treatments.values()], kind=data.kind)


def pairwise_report(metrics: dict[str, MetricArms]) -> None:
    """The obvious implementation: one scipy/statsmodels call per pair, then Holm."""
    p_values = []
    for data in metrics.values():
        c = data.control
        for t in data.treatments.values():
            if data.kind == "binary":
                _, p = proportions_ztest([t.total, c.total], [t.n, c.n])
            else:
                p = sps.ttest_ind_from_stats(
                    t.mean,
                    np.sqrt(t.variance),
                    t.n,
                    c.mean,
                    np.sqrt(c.variance),
                    c.n,
                    equal_var=False,
                ).pvalue
            p_values.append(p)
    multipletests(p_values, method="holm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    rng = np.random.default_rng(11)
    n = rng.integers(1_000, 5_000, size=ARMS).astype(float)
    rates = 0.10 + rng.normal(0, 0.004, size=ARMS)
    successes = np.round(n * rates)
    alpha, beta = 1 + successes, 1 + n - successes
    reference = monte_carlo_p_best(alpha, beta, 10_000_000, seed=1)
    exact = p_best_beta(alpha, beta)
    mc = monte_carlo_p_best(alpha, beta, 100_000, seed=2)
    print(f"P(best), {ARMS} Beta arms (1,000-5,000 units each, rates ~10%):")
    print("| method | median ms | max abs error vs 10M-draw reference |")
    print("|---|---|---|")
    integration_ms = timed(lambda: p_best_beta(alpha, beta), args.repeat)
    monte_carlo_ms = timed(
        lambda: monte_carlo_p_best(alpha, beta, 100_000, 3), max(5, args.repeat // 10)
    )
    print(
        f"| integration (app.stats.p_best) | {integration_ms:.2f} "
        f"| {np.abs(exact - reference).max():.1e} |"
    )
    print(
        f"| Monte Carlo, 100k draws per arm | {monte_carlo_ms:.2f} "
        f"| {np.abs(mc - reference).max():.1e} |"
    )
    print("(the reference itself has Monte-Carlo error up to ~1.6e-4)\n")

    metrics = report_data(seed=5)
    print(
        f"All statistics of a {ARMS}-arm, {METRICS}-metric report "
        f"({(ARMS - 1) * METRICS} comparisons):"
    )
    print("| computation | median ms |")
    print("|---|---|")
    print(
        f"| engine: fixed-horizon + Holm, mSPRT, confidence sequence, Bayesian, SRM | "
        f"{timed(lambda: engine_report(metrics), args.repeat):.1f} |"
    )
    print(
        f"| engine: fixed-horizon effects and lifts + Holm only | "
        f"{timed(lambda: compare_report(metrics, correction='holm'), args.repeat):.1f} |"
    )
    print(
        f"| baseline: scipy/statsmodels test per pair + multipletests Holm | "
        f"{timed(lambda: pairwise_report(metrics), args.repeat):.1f} |"
    )
    off_policy(args)
    group_sequential(args)


def bandit_log(rounds: int, arms: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    means = np.linspace(0.05, 0.15, arms)
    # Allocation drifting towards better arms, with a floor: propensities change over time.
    logits = np.outer(np.linspace(0, 3, rounds), means * 20)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    probabilities = 0.02 + (1 - 0.02 * arms) * probabilities
    cumulative = probabilities.cumsum(axis=1)
    actions = (rng.random(rounds)[:, None] > cumulative).sum(axis=1)
    actions = np.minimum(actions, arms - 1)
    rewards = (rng.random(rounds) < means[actions]).astype(float)
    propensity = probabilities[np.arange(rounds), actions]
    return actions, rewards, propensity


def off_policy(args: argparse.Namespace) -> None:
    actions, rewards, propensity = bandit_log(100_000, ARMS, seed=9)
    target = (actions == ARMS - 1).astype(float)  # the policy "always the last arm"
    model = np.full(actions.size, rewards.mean())
    log = ope.LoggedFeedback(rewards, propensity, target, model, model)

    def engine_arms() -> None:
        ope.arm_values(actions, rewards, propensity, n_arms=ARMS)

    def engine_estimators() -> None:
        for estimator in (
            ope.InversePropensityScore(),
            ope.SelfNormalizedIPS(),
            ope.DoublyRobust(),
        ):
            estimator.estimate_interval(log)

    def pandas_ips() -> None:
        frame = pd.DataFrame({"arm": actions, "term": rewards / propensity})
        frame.groupby("arm")["term"].sum() / len(frame)

    print(f"\nOff-policy evaluation, 100,000 rounds, {ARMS} arms:")
    print("| computation | median ms |")
    print("|---|---|")
    print(
        f"| engine: every arm's IPS value, CI and CS (arm_values) | "
        f"{timed(engine_arms, max(5, args.repeat // 5)):.1f} |"
    )
    print(
        f"| engine: IPS, SNIPS, DR intervals of one policy | "
        f"{timed(engine_estimators, args.repeat):.1f} |"
    )
    print(
        f"| baseline: per-arm IPS means with pandas groupby (no intervals) | "
        f"{timed(pandas_ips, args.repeat):.1f} |"
    )


def group_sequential(args: argparse.Namespace) -> None:
    print("\nGroup-sequential designs (recursive numerical integration):")
    print("| design | median ms |")
    print("|---|---|")
    for label, build in (
        ("Lan-DeMets O'Brien-Fleming, 5 looks", lambda: GroupSequentialDesign.lan_demets(5)),
        ("Lan-DeMets O'Brien-Fleming, 20 looks", lambda: GroupSequentialDesign.lan_demets(20)),
        ("classical Pocock, 5 looks", lambda: GroupSequentialDesign.classical(5)),
    ):
        print(f"| {label} | {timed(build, max(5, args.repeat // 5)):.1f} |")


if __name__ == "__main__":
    main()
