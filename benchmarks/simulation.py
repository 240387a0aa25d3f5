"""Simulation speed and regret: Croupier's Thompson sampling next to MABWiser's, same scenario.

    python -m benchmarks.simulation [--quick] [--replicates 3] [--floor 0.001]

The scenario: 10 Bernoulli arms with means 0.10, 0.11, ..., 0.18 and 0.20 (one clear best arm),
1,000,000 rounds (--quick: 100,000), the model updated every 1,000 rounds.

* Croupier: `simulations.engine.run_replicate` with the service's own Thompson policy
  (`type = "thompson"`), which serves each arm's exact posterior P(best), floored at
  `min_probability` per arm (--floor; the service default is 0.01, i.e. 10% forced exploration
  with 10 arms). The floor keeps every propensity away from 0, so the decision log stays usable
  for off-policy evaluation; it also costs regret.
* MABWiser: `MAB(arms, LearningPolicy.ThompsonSampling())`, the same Beta(1, 1) prior, no floor
  (some arms' propensities go to ~0: its log would not support off-policy evaluation). Each block
  of 1,000 rounds takes 1,000 decisions from one `predict` call with a 1,000-row dummy context
  (for context-free policies that is MABWiser's vectorised path: one Beta draw per arm and row),
  then `partial_fit` on the block's decisions and 0/1 rewards. `predict` needs a first `fit`:
  the first block is served uniformly at random and fitted, which is exactly what Croupier's
  first block does (P(best) under equal priors is 1/K for every arm).

Both sides use the engine's common random numbers: the same seeded streams per replicate, so
the same per-round uniforms decide the rewards (reward = u < mean of the served arm) and the
same uniforms pick the first block's arms. Pseudo-regret = sum over rounds of (best mean - mean
of the served arm). Each replicate runs Croupier, then MABWiser, in one process, one after the
other; the table shows median rounds/s and mean final regret +- standard error over the
replicates. Results are written to benchmarks/results/simulation.json (--quick:
simulation-quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from mabwiser.mab import MAB, LearningPolicy

from app.bandits import arms_for_uniforms
from simulations.engine import run_replicate
from simulations.scenario import Scenario, scenario_from_dict

MEANS = (0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.20)
UPDATE_INTERVAL = 1_000
SEED = 2026
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 10.0
TARGET_SECONDS = 3.0
TARGET_HORIZON = 1_000_000


@dataclass(frozen=True)
class Run:
    seconds: float
    regret: float


@dataclass(frozen=True)
class Summary:
    implementation: str
    rounds: int
    replicates: int
    median_seconds: float
    max_seconds: float
    median_rounds_per_s: float
    regret_mean: float
    regret_se: float
    regrets: list[float]
    seconds: list[float]

    @classmethod
    def of(cls, implementation: str, rounds: int, runs: list[Run]) -> Summary:
        regrets = [r.regret for r in runs]
        seconds = [r.seconds for r in runs]
        se = statistics.stdev(regrets) / len(regrets) ** 0.5 if len(regrets) > 1 else 0.0
        return cls(
            implementation=implementation,
            rounds=rounds,
            replicates=len(runs),
            median_seconds=statistics.median(seconds),
            max_seconds=max(seconds),
            median_rounds_per_s=rounds / statistics.median(seconds),
            regret_mean=statistics.fmean(regrets),
            regret_se=se,
            regrets=regrets,
            seconds=seconds,
        )


def build_scenario(horizon: int, floor: float) -> Scenario:
    return scenario_from_dict(
        {
            "name": "benchmark-bernoulli-10",
            "horizon": horizon,
            "update_interval": UPDATE_INTERVAL,
            "seed": SEED,
            "environment": {"kind": "bernoulli", "means": list(MEANS)},
            "policies": [
                {
                    "name": "croupier-thompson",
                    "type": "thompson",
                    "params": {"min_probability": floor},
                }
            ],
        }
    )


def croupier_run(scenario: Scenario, replicate: int) -> Run:
    start = time.perf_counter()
    result = run_replicate(scenario, scenario.policies[0], replicate)
    return Run(time.perf_counter() - start, result.final_regret)


def mabwiser_run(scenario: Scenario, replicate: int) -> Run:
    """The same replicate with MABWiser's ThompsonSampling, batched like the engine."""
    start = time.perf_counter()
    env = scenario.environment
    horizon, block, n_arms = scenario.horizon, scenario.update_interval, env.n_arms
    # The engine's streams for this replicate: (context, noise, choice, delay).
    streams = [
        np.random.default_rng(s)
        for s in np.random.SeedSequence([scenario.seed, replicate]).spawn(4)
    ]
    noise_rng, choice_rng = streams[1], streams[2]
    means = np.asarray(MEANS)
    best = means.max()
    mab = MAB(
        arms=list(range(n_arms)),
        learning_policy=LearningPolicy.ThompsonSampling(),
        seed=SEED * 1_000 + replicate,
    )
    regret = 0.0
    for first in range(0, horizon, block):
        n = min(block, horizon - first)
        noise = env.noise(noise_rng, n)
        if first == 0:
            # predict() needs a fit first: serve the first block uniformly, as Croupier does.
            arms = arms_for_uniforms(choice_rng.random(n), np.full(n_arms, 1.0 / n_arms))
        else:
            arms = np.fromiter(mab.predict(np.zeros((n, 1))), dtype=np.intp, count=n)
        served = means[arms]
        rewards = (noise < served).astype(np.float64)
        regret += float((best - served).sum())
        if first == 0:
            mab.fit(arms, rewards)
        else:
            mab.partial_fit(arms, rewards)
    return Run(time.perf_counter() - start, regret)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 rounds, 2 replicates")
    parser.add_argument("--replicates", type=int, default=None, help="default 3 (--quick: 2)")
    parser.add_argument(
        "--floor",
        type=float,
        default=0.001,
        help="Croupier's min_probability per arm (default 0.001: 1%% exploration with 10 arms)",
    )
    args = parser.parse_args()
    horizon = 100_000 if args.quick else TARGET_HORIZON
    replicates = args.replicates or (2 if args.quick else 3)
    scenario = build_scenario(horizon, args.floor)

    load_before = os.getloadavg()[0]
    warm_up = build_scenario(10 * UPDATE_INTERVAL, args.floor)
    croupier_run(warm_up, 0)
    mabwiser_run(warm_up, 0)

    croupier: list[Run] = []
    mabwiser: list[Run] = []
    for replicate in range(replicates):
        croupier.append(croupier_run(scenario, replicate))
        mabwiser.append(mabwiser_run(scenario, replicate))
    load_after = os.getloadavg()[0]
    ours = Summary.of(f"Croupier thompson (floor {args.floor:g}/arm)", horizon, croupier)
    theirs = Summary.of("MABWiser ThompsonSampling (no floor)", horizon, mabwiser)

    speedup = ours.median_rounds_per_s / theirs.median_rounds_per_s
    regret_ok = ours.regret_mean <= theirs.regret_mean
    timed_full = horizon == TARGET_HORIZON
    time_ok = ours.max_seconds < TARGET_SECONDS if timed_full else None

    floor_share = args.floor * len(MEANS)
    # Regret the floor alone adds: floor * rounds on each arm, times that arm's gap to the best.
    floor_regret = args.floor * horizon * sum(max(MEANS) - m for m in MEANS)
    differences = [c.regret - m.regret for c, m in zip(croupier, mabwiser, strict=True)]
    difference = statistics.fmean(differences)
    difference_se = (
        statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else 0.0
    )
    print(
        f"{len(MEANS)}-arm Bernoulli Thompson sampling, means {', '.join(f'{m:g}' for m in MEANS)};"
        f" {horizon:,} rounds, update every {UPDATE_INTERVAL:,} rounds, {replicates} replicates"
        f" (same seeds and per-round uniforms for both):"
    )
    print("| implementation | rounds | median s per run | rounds/s | final regret (mean ± se) |")
    print("|---|---|---|---|---|")
    for s in (ours, theirs):
        print(
            f"| {s.implementation} | {s.rounds:,} | {s.median_seconds:.2f} "
            f"| {s.median_rounds_per_s:,.0f} | {s.regret_mean:,.1f} ± {s.regret_se:,.1f} |"
        )
    print(
        f"\nCroupier's allocation keeps a floor of {args.floor:g} per arm ({floor_share:.1%} of "
        "traffic spread uniformly), so every propensity stays >= the floor and its decision logs "
        "stay usable for off-policy evaluation; MABWiser's allocation has no floor. "
        f"The floor alone costs about {floor_regret:,.0f} regret over {horizon:,} rounds "
        "(floor x rounds x sum of the arms' gaps to the best)."
    )
    print("\n| target | result | met |")
    print("|---|---|---|")
    print(
        f"| >= {TARGET_SPEEDUP:g}x MABWiser's rounds/s | {speedup:.1f}x "
        f"| {'yes' if speedup >= TARGET_SPEEDUP else 'NO'} |"
    )
    print(
        f"| final regret <= MABWiser's | {ours.regret_mean:,.1f} vs {theirs.regret_mean:,.1f} "
        f"(paired difference {difference:+,.1f} ± {difference_se:,.1f}) "
        f"| {'yes' if regret_ok else 'NO'} |"
    )
    if timed_full:
        print(
            f"| {TARGET_HORIZON:,}-round run < {TARGET_SECONDS:g} s (slowest replicate) "
            f"| {ours.max_seconds:.2f} s | {'yes' if time_ok else 'NO'} |"
        )
    else:
        print(f"| {TARGET_HORIZON:,}-round run < {TARGET_SECONDS:g} s | not run (--quick) | - |")

    print(
        f"\n1-minute load average {load_before:.1f} before, {load_after:.1f} after "
        f"({os.cpu_count()} CPUs): times are only comparable on an otherwise idle machine."
    )

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("simulation-quick.json" if args.quick else "simulation.json")
    payload = {
        "scenario": {
            "arms": len(MEANS),
            "means": list(MEANS),
            "rounds": horizon,
            "update_interval": UPDATE_INTERVAL,
            "seed": SEED,
            "replicates": replicates,
            "croupier_min_probability": args.floor,
            "croupier_exploration_share": floor_share,
            "croupier_floor_regret": floor_regret,
        },
        "results": [asdict(ours), asdict(theirs)],
        "speedup": speedup,
        "regret_difference": {"mean": difference, "se": difference_se},
        "targets": {
            "speedup_10x": speedup >= TARGET_SPEEDUP,
            "regret_not_higher": regret_ok,
            "million_rounds_under_3s": time_ok,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
