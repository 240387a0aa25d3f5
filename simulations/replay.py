"""Off-policy evaluation of candidate policies on logged decisions.

A log is a table with one row per decision: `arm` (0-based) or `variant` (a name, mapped to an
arm by `arms=`), `propensity` (the probability the served arm had when it was served, in
(0, 1]), `reward`, and optionally a context column (`segment` by default) whose values group
the rounds. `croupier simulate --logs` writes such tables, and so can any export of the
service's decisions joined to their rewards (CSV or Parquet); `read_log` reads either.

A candidate is a per-context allocation: a probability per arm, possibly different in each
context segment. `candidate_from_policy` builds one the way the service would: the policy,
built by the service's own factory, updated on the log's per-arm sufficient statistics (per
segment with `per_segment`), serves its state's probabilities. `uniform` and `always(arm)` are
the usual yardsticks. Every candidate is evaluated with the statistics engine's estimators:

* IPS and SNIPS, with their normal-approximation intervals;
* DR with a tabular reward model qhat(segment, arm) = mean reward, 2-fold cross-fitted (the
  model that scores a round never saw it, so DR keeps its interval honest; Chernozhukov et al.
  2018, "Double/debiased machine learning", sec. 3).

The candidate's probability of the logged arm, divided by the logged propensity, is the
importance weight; a candidate that puts weight where the logging policy never acted cannot be
evaluated (the estimators refuse a log with no overlap), which is why the service never lets
exploration reach 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.bandits import PolicyConfigError
from app.stats.ope import compare_policies
from simulations.engine import arm_stats_rows, standard_error, sufficient_sums
from simulations.environments import ScenarioError
from simulations.scenario import PolicySpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Log:
    """A validated log: arrays of equal length; segments are coded 0..S-1."""

    arm: IntArray
    propensity: FloatArray
    reward: FloatArray
    segment: IntArray
    n_arms: int
    segment_names: tuple[str, ...] = ("all",)

    @property
    def n(self) -> int:
        return int(self.arm.size)

    @property
    def n_segments(self) -> int:
        return len(self.segment_names)


def read_log(path: str | Path) -> pd.DataFrame:
    source = Path(path)
    if source.suffix not in (".parquet", ".csv"):
        raise ScenarioError("log", f"a log must be a .csv or .parquet file, got {source.name}")
    try:
        return pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    except OSError:
        raise
    except Exception as exc:  # pyarrow / the CSV parser: a file that is not what it says
        raise ScenarioError("log", f"cannot read {source.name}: {exc}") from None


def log_from_frame(
    frame: pd.DataFrame,
    *,
    arms: Sequence[str] | None = None,
    segment_column: str | None = "segment",
) -> Log:
    """Validate a logged-decisions table; every problem names the column and the rule."""
    for column in ("propensity", "reward"):
        if column not in frame.columns:
            raise ScenarioError(column, f"the log needs a {column!r} column")
    if "arm" in frame.columns and (arms is None or "variant" not in frame.columns):
        arm = _whole_numbers("arm", frame["arm"])
        n_arms = int(arm.max()) + 1 if arm.size else 0
        # A simulation's log carries the whole served vector (p_0 .. p_{K-1}): its width is
        # the number of arms, including any never served.
        n_arms = max(n_arms, sum(1 for c in frame.columns if re.fullmatch(r"p_\d+", str(c))))
        if arms is not None:  # names the arms, including any never served
            if n_arms > len(arms):
                raise ScenarioError("arm", f"arm must be < {len(arms)}, the number of arms")
            n_arms = len(arms)
    elif "variant" in frame.columns:
        names = list(arms) if arms is not None else sorted(frame["variant"].astype(str).unique())
        index = {name: i for i, name in enumerate(names)}
        unknown = set(frame["variant"].astype(str)) - set(index)
        if unknown:
            raise ScenarioError("variant", f"variants not in arms: {sorted(unknown)[:5]}")
        arm = frame["variant"].astype(str).map(index).to_numpy(dtype=np.intp)
        n_arms = len(names)
    else:
        raise ScenarioError("arm", "the log needs an 'arm' (0-based) or a 'variant' column")
    if arm.size == 0:
        raise ScenarioError("log", "the log is empty")
    if arm.min() < 0:
        raise ScenarioError("arm", "arm must be >= 0")
    propensity = _finite("propensity", frame["propensity"])
    if propensity.min() <= 0 or propensity.max() > 1:
        raise ScenarioError("propensity", "every propensity must be in (0, 1]")
    reward = _finite("reward", frame["reward"])
    if segment_column is not None and segment_column in frame.columns:
        # A missing segment is a segment of its own, not a crash (nor the last segment).
        values = frame[segment_column].astype("string").fillna("<missing>")
        codes, uniques = pd.factorize(values, sort=True)
        segment = np.asarray(codes, dtype=np.intp)
        segment_names = tuple(str(u) for u in uniques)
    else:
        segment = np.zeros(arm.size, dtype=np.intp)
        segment_names = ("all",)
    return Log(arm, propensity, reward, segment, n_arms, segment_names)


def _whole_numbers(name: str, column: pd.Series[Any]) -> IntArray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise ScenarioError(name, f"{name} must hold whole numbers")
    return values.astype(np.intp)


def _finite(name: str, column: pd.Series[Any]) -> FloatArray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ScenarioError(name, f"{name} must hold finite numbers")
    return values


@dataclass(frozen=True)
class Candidate:
    """A policy to evaluate: `allocation[s, a]` = probability of arm a in segment s."""

    name: str
    allocation: FloatArray

    def target_probability(self, log: Log) -> FloatArray:
        result: FloatArray = self.allocation[log.segment, log.arm]
        return result


def uniform(log: Log) -> Candidate:
    return Candidate("uniform", np.full((log.n_segments, log.n_arms), 1.0 / log.n_arms))


def always(log: Log, arm: int) -> Candidate:
    allocation = np.zeros((log.n_segments, log.n_arms))
    allocation[:, arm] = 1.0
    return Candidate(f"always arm {arm}", allocation)


def candidate_from_policy(log: Log, spec: PolicySpec) -> Candidate:
    """The allocation the service's policy would serve after learning from this whole log."""
    policy = spec.build(log.n_arms)
    groups = log.segment if spec.per_segment else np.zeros(log.n, dtype=np.intp)
    shape = (log.n_segments if spec.per_segment else 1, log.n_arms)
    sums = sufficient_sums(groups, log.arm, log.reward, shape)
    try:
        rows = [policy.update(stats).probabilities for stats in arm_stats_rows(*sums)]
    except PolicyConfigError as exc:
        raise ScenarioError(f"policy {spec.name}", f"cannot learn from this log: {exc}") from None
    allocation = np.array(rows)
    if not spec.per_segment:
        allocation = np.repeat(allocation, log.n_segments, axis=0)
    return Candidate(spec.name, allocation)


def _cross_fitted_model(log: Log) -> FloatArray:
    """qhat[i, a]: mean reward of (segment_i, a) on the other fold (rounds of the other parity).

    A cell the other fold never saw falls back to that fold's overall mean reward.
    """
    fold = np.arange(log.n) % 2
    size = log.n_segments * log.n_arms
    qhat = np.zeros((log.n, log.n_arms))
    for f in (0, 1):
        train = fold != f
        cells = log.segment[train] * log.n_arms + log.arm[train]
        n = np.bincount(cells, minlength=size)
        s = np.bincount(cells, weights=log.reward[train], minlength=size)
        fallback = float(log.reward[train].mean()) if train.any() else 0.0
        table = np.where(n > 0, s / np.maximum(n, 1), fallback).reshape(log.n_segments, log.n_arms)
        qhat[fold == f] = table[log.segment[fold == f]]
    return qhat


def evaluate(log: Log, candidates: Sequence[Candidate], *, alpha: float = 0.05) -> pd.DataFrame:
    """IPS, SNIPS and DR estimates (with CIs) of every candidate's value on the log.

    An estimator that cannot give an answer (no overlap, no variation) reports its reason in
    `note` instead of a number.
    """
    return compare_policies(
        reward=log.reward,
        propensity=log.propensity,
        arm=log.arm,
        reward_model=_cross_fitted_model(log),
        targets={c.name: c.allocation[log.segment] for c in candidates},
        alpha=alpha,
    )


def logged_value(log: Log) -> Mapping[str, float]:
    """The logging policy's own value: the mean logged reward, with its standard error."""
    return {"estimate": float(log.reward.mean()), "std_error": standard_error(log.reward)}


def standard_candidates(log: Log, specs: Sequence[PolicySpec] = ()) -> list[Candidate]:
    """The yardsticks (uniform, each fixed arm) and the given policies trained on the log."""
    return [
        uniform(log),
        *(always(log, a) for a in range(log.n_arms)),
        *(candidate_from_policy(log, s) for s in specs),
    ]
