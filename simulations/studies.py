"""Studies across replicates: what the logs of a policy let you estimate, and how wrong.

`arm_estimate_table` compares, arm by arm, two ways of estimating "what would arm a have
earned" from a policy's own logs: the naive mean of the rounds that served a, and the
inverse-propensity (IPS) estimate that weights each round by 1 / its logged propensity. The
bias is the mean over replicates of (estimate - truth), with its Monte-Carlo standard error.

`feedback_loop_table` is the headline of the feedback-loop study (simulations/scenarios/
feedback_loop.toml): how often each policy ended locked onto a wrong arm, and how biased its
naive and IPS estimates were. A greedy policy retrained on its own logs stops serving arms that
looked bad early, so their unlucky early means are never corrected (negative bias) and it locks
onto a wrong arm in a measurable share of runs; IPS cannot repair that, because an arm served
with probability 0 leaves no trace to reweight. With an exploration floor every arm keeps a
positive propensity and IPS is unbiased (Horvitz & Thompson 1952; for adaptively collected
bandit logs, e.g. Bottou et al. 2013, "Counterfactual reasoning and learning systems", JMLR 14).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from simulations.engine import ReplicateResult, SimulationResult, standard_error


def _estimates(results: list[ReplicateResult]) -> tuple[np.ndarray, ...]:
    estimates = [r.arm_estimates for r in results]
    if any(e is None for e in estimates):
        raise ValueError(
            "this study needs the arms' estimates: set estimate_arms = true in the scenario"
        )
    truth = np.array([e.truth for e in estimates if e is not None])
    naive = np.array([e.naive for e in estimates if e is not None])
    ips = np.array([e.ips for e in estimates if e is not None])
    low = np.array([e.ips_ci_low for e in estimates if e is not None])
    high = np.array([e.ips_ci_high for e in estimates if e is not None])
    return truth, naive, ips, low, high


def _bias(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    error = estimate - truth
    error = error[np.isfinite(error)]
    if error.size == 0:
        return math.nan, math.nan
    return float(error.mean()), standard_error(error)


def arm_estimate_table(result: SimulationResult) -> pd.DataFrame:
    """One row per (policy, arm): truth, naive and IPS bias with standard errors, IPS coverage."""
    rows: list[dict[str, Any]] = []
    for name, results in result.by_policy():
        truth, naive, ips, low, high = _estimates(results)
        for arm in range(truth.shape[1]):
            naive_bias, naive_se = _bias(naive[:, arm], truth[:, arm])
            ips_bias, ips_se = _bias(ips[:, arm], truth[:, arm])
            finite = np.isfinite(low[:, arm]) & np.isfinite(high[:, arm])
            covered = (low[:, arm] <= truth[:, arm]) & (truth[:, arm] <= high[:, arm])
            rows.append(
                {
                    "policy": name,
                    "arm": arm,
                    "truth": float(truth[:, arm].mean()),
                    "never_served": float(np.mean(~np.isfinite(naive[:, arm]))),
                    "naive_bias": naive_bias,
                    "naive_bias_se": naive_se,
                    "ips_bias": ips_bias,
                    "ips_bias_se": ips_se,
                    "ips_ci_coverage": float(covered[finite].mean()) if finite.any() else math.nan,
                }
            )
    return pd.DataFrame(rows)


def feedback_loop_table(result: SimulationResult) -> pd.DataFrame:
    """One row per policy: locked onto a wrong arm, best arm found, worst naive and IPS bias.

    "Locked onto a wrong arm": the most probable arm of the allocation served in the last block
    is not the best arm.
    The worst bias is the arm whose bias is largest in absolute value, with how many standard
    errors it is from 0 (a |z| above ~3 is not Monte-Carlo noise).
    """
    rows: list[dict[str, Any]] = []
    for name, results in result.by_policy():
        truth, naive, ips, _, _ = _estimates(results)
        # The allocation served in the last block (per-segment policies: averaged over the
        # segments as served).
        wrong = [int(np.argmax(r.allocation[-1])) != r.best_arm for r in results]
        row: dict[str, Any] = {
            "policy": name,
            "replicates": len(results),
            "locked_on_wrong_arm": float(np.mean(wrong)),
            "best_arm_share_final_block": float(
                np.mean([r.allocation[-1, r.best_arm] for r in results])
            ),
        }
        for label, estimate in (("naive", naive), ("ips", ips)):
            biases = [_bias(estimate[:, a], truth[:, a]) for a in range(truth.shape[1])]
            worst = max(range(len(biases)), key=lambda a: abs(biases[a][0]))
            bias, se = biases[worst]
            row[f"{label}_worst_bias"] = bias
            row[f"{label}_worst_bias_z"] = bias / se if se and se > 0 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)
