"""The simulation loop: the service's policies, batched updates, delayed feedback, ground truth.

One replicate of one policy runs `horizon` rounds in blocks of `update_interval`:

1. every round of the block gets a context segment and one common random number for its reward
   (the same for every policy in the same replicate: common random numbers);
2. the policy's current `PolicyState` picks the arms, by the service's inverse-CDF rule
   (`app.bandits.allocation.inverse_cdf_arms`, element for element `arm_for_bucket`), from a
   seeded stream of uniforms or, with `uniforms = "hash"`, from the service's own hash;
3. rewards are drawn; the learner, at the end of the block, adds the decisions whose reward
   window has closed to the cumulative per-arm statistics (exactly the service learner's rule,
   see `Feedback`) and calls `policy.update`, as the service publishes a new policy version.

Pseudo-regret is measured against the environment's truth: sum over rounds of (best arm's
expected reward in that round and segment) - (served arm's expected reward).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.bandits import (
    ArmStats,
    PolicyConfigError,
    PolicyState,
    decision_uniform,
    inverse_cdf_arms,
)
from app.stats.bayes import summarize
from app.stats.common import MetricKind
from app.stats.ope import InversePropensityScore, LoggedFeedback
from app.stats.sufficient import SampleStats, StatsInputError
from simulations.environments import Environment
from simulations.scenario import Feedback, PolicySpec, Scenario, WinnerRule

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


class Observer(Protocol):
    """Watches the learner's cumulative statistics at every update (a decision rule, say)."""

    def look(self, rounds: int, stats: Sequence[SampleStats]) -> None: ...

    def result(self) -> Mapping[str, Any]: ...


ObserverFactory = Callable[[Scenario], Observer]


@dataclass(frozen=True)
class DecisionLog:
    """Every decision of a replicate, as the service would have logged it."""

    segment: IntArray
    arm: IntArray
    propensity: FloatArray
    probabilities: FloatArray
    """(rounds, K): the whole vector served, for off-policy evaluation."""
    reward: FloatArray
    """The reward the learner used (default_reward when the outcome missed the window)."""
    expected: FloatArray
    """(rounds, K): the truth, each arm's expected reward in that round and segment."""

    def frame(self) -> pd.DataFrame:
        """One row per round: the decision as logged, plus the truth behind it (the served
        arm's expected reward and the round's pseudo-regret)."""
        rows = np.arange(self.arm.size)
        served = self.expected[rows, self.arm]
        columns: dict[str, Any] = {
            "round": rows,
            "segment": self.segment,
            "arm": self.arm,
            "propensity": self.propensity,
            "reward": self.reward,
            "expected_reward": served,
            "regret": self.expected.max(axis=1) - served,
        }
        for a in range(self.probabilities.shape[1]):
            columns[f"p_{a}"] = self.probabilities[:, a]
        return pd.DataFrame(columns)


@dataclass
class ReplicateResult:
    """One replicate of one policy: checkpoints after every update, and what was decided."""

    policy: str
    replicate: int
    rounds: IntArray
    """Rounds played at each checkpoint (one checkpoint per update)."""
    cumulative_reward: FloatArray
    cumulative_regret: FloatArray
    allocation: FloatArray
    """(checkpoints, K): mean probability of each arm over the block before the checkpoint."""
    pulls: IntArray
    """(checkpoints, K): cumulative decisions per arm."""
    learned: IntArray
    """Decisions the learner had counted at each checkpoint."""
    best_arm: int
    """The arm with the highest context-averaged expected reward at the end of the horizon."""
    winner: int | None = None
    winner_round: int | None = None
    winner_correct: bool | None = None
    rules: Mapping[str, Any] = field(default_factory=dict)
    final_state: PolicyState | None = None
    update_errors: Sequence[str] = ()
    """Updates the policy refused (the previous allocation kept serving), as the service's
    learner refuses statistics a policy cannot take."""
    arm_estimates: ArmEstimates | None = None
    log: DecisionLog | None = None
    seconds: float = 0.0

    @property
    def final_regret(self) -> float:
        return float(self.cumulative_regret[-1])


TIE = 1e-12
"""Arms whose true means are within TIE are equal: neither is a correct winner."""


def decision_id(replicate: int, round_index: int, prefix: str = "sim") -> str:
    """The decision id a simulated decision would carry in the service (for uniforms="hash").

    Live mode gives each run its own prefix: the service refuses a decision id it has seen.
    """
    return f"{prefix}-{replicate}-{round_index}"


def metric_kind(env: Environment, stats: Sequence[SampleStats]) -> MetricKind:
    """ "binary" when every learned reward was 0 or 1 (Bernoulli arms, and a default reward in
    {0, 1}), else "continuous"."""
    binary = env.reward == "bernoulli" and all(s.sum_squares == s.total for s in stats)
    return "binary" if binary else "continuous"


def is_strictly_best(truth: FloatArray, arm: int) -> bool:
    """Arm `arm` beats every other arm by more than TIE (so a winner among ties is wrong)."""
    others = np.delete(truth, arm)
    return bool(others.size == 0 or truth[arm] - others.max() > TIE)


def p_best_leader(
    stats: Sequence[SampleStats],
    *,
    kind: MetricKind,
    threshold: float,
    min_samples: int,
    max_expected_loss: float = math.inf,
    control: int = 0,
) -> int | None:
    """The arm meeting the P(best) winner criterion, if one does: every arm has min_samples
    (and 2, for a variance), P(best) >= threshold, expected loss <= max_expected_loss."""
    if min(s.n for s in stats) < max(min_samples, 2):
        return None
    try:
        summary = summarize(stats, kind=kind, control=control)
    except StatsInputError:
        return None
    leader = int(np.argmax(summary.p_best))
    holds = (
        summary.p_best[leader] >= threshold and summary.expected_loss[leader] <= max_expected_loss
    )
    return leader if holds else None


@dataclass(frozen=True)
class BlockDraws:
    """The world's random draws for one block of rounds of one replicate."""

    start: int
    rounds: IntArray
    segments: IntArray
    noise: FloatArray
    """One common random number per round, turned into the served arm's reward."""
    delays: FloatArray
    """Seconds from each decision to its outcome."""
    uniforms: FloatArray
    """The uniform that picks each round's arm through the served probability vector."""


def environment_draws(
    scenario: Scenario, replicate: int, *, id_prefix: str = "sim"
) -> Iterator[BlockDraws]:
    """Block by block (of `update_interval` rounds), everything random in replicate `replicate`.

    Four independent streams of SeedSequence([seed, replicate]): contexts, reward noise, arm
    uniforms, delays. None depends on the policy, so every policy of a scenario meets the same
    world (common random numbers), and live mode replays the same world against a server. With
    uniforms = "hash" the arm uniforms are the service's own hash of (salt, decision_id).
    """
    env = scenario.environment
    horizon, block = scenario.horizon, scenario.update_interval
    context_rng, noise_rng, choice_rng, delay_rng = (
        np.random.default_rng(s)
        for s in np.random.SeedSequence([scenario.seed, replicate]).spawn(4)
    )
    for start in range(0, horizon, block):
        n = min(block, horizon - start)
        rounds = np.arange(start, start + n, dtype=np.intp)
        segments = env.contexts(context_rng, start, n)
        noise = env.noise(noise_rng, n)
        delays = _delays(scenario.feedback, delay_rng, n)
        if scenario.uniforms == "hash":
            salt = scenario.salt
            u = np.array(
                [decision_uniform(salt, decision_id(replicate, int(i), id_prefix)) for i in rounds]
            )
        else:
            u = choice_rng.random(n)
        yield BlockDraws(start, rounds, segments, noise, delays, u)


def run_replicate(
    scenario: Scenario,
    spec: PolicySpec,
    replicate: int,
    *,
    keep_log: bool = False,
    observers: Sequence[Observer] = (),
    id_prefix: str = "sim",
) -> ReplicateResult:
    """Play one replicate of one policy; deterministic in (scenario, replicate, id_prefix)."""
    started = time.perf_counter()
    env = scenario.environment
    n_arms, horizon, block = env.n_arms, scenario.horizon, scenario.update_interval
    n_states = env.n_segments if spec.per_segment else 1
    policy = spec.build(n_arms)
    feedback = scenario.feedback
    learner = _Learner(env, feedback, horizon, n_states)
    states = [policy.initial_state()] * n_states
    update_errors: list[str] = []
    tracker = _WinnerTracker(scenario.winner, env) if scenario.winner else None

    checkpoints = -(-horizon // block)
    out_rounds = np.zeros(checkpoints, dtype=np.intp)
    out_reward = np.zeros(checkpoints)
    out_regret = np.zeros(checkpoints)
    out_alloc = np.zeros((checkpoints, n_arms))
    out_pulls = np.zeros((checkpoints, n_arms), dtype=np.intp)
    out_learned = np.zeros(checkpoints, dtype=np.intp)
    log = _LogBuffer(horizon, n_arms) if keep_log or scenario.estimate_arms else None
    pulls = np.zeros(n_arms, dtype=np.intp)
    total_reward = total_regret = 0.0

    for c, draws in enumerate(environment_draws(scenario, replicate, id_prefix=id_prefix)):
        start, n, rounds, segments = draws.start, draws.rounds.size, draws.rounds, draws.segments
        u = draws.uniforms
        table = np.array([s.probabilities for s in states])
        state_of = segments if n_states > 1 else np.zeros(n, dtype=np.intp)
        arms = _choose(u, table, state_of)
        served, best = env.served_and_best(rounds, segments, arms)
        rewards = env.draw(served, draws.noise)
        learner.record(start, state_of, arms, rewards, draws.delays)

        pulls += np.bincount(arms, minlength=n_arms)
        total_reward += float(rewards.sum())
        total_regret += float((best - served).sum())
        if n_states == 1:
            out_alloc[c] = table[0]
        else:
            out_alloc[c] = np.bincount(state_of, minlength=n_states) @ table / n
        if log is not None:
            log.add(
                start,
                segments,
                arms,
                table[state_of],
                learner.learned_reward(start, n),
                env.means(rounds, segments),
            )

        # The learner runs at the end of the block, as the service's would.
        cumulative = learner.close_through(start + n)
        for k in range(n_states):
            try:
                states[k] = policy.update(cumulative[k])
            except PolicyConfigError as exc:
                # The service's learner keeps serving the previous version (and logs why).
                update_errors.append(f"round {start + n}: {exc}")
        if observers or tracker is not None:
            pooled = learner.pooled()
            for observer in observers:
                observer.look(start + n, pooled)
            if tracker is not None:
                tracker.look(start + n, pooled)

        out_rounds[c] = start + n
        out_reward[c] = total_reward
        out_regret[c] = total_regret
        out_pulls[c] = pulls
        out_learned[c] = learner.learned

    final_means = env.average_means(horizon - 1)
    result = ReplicateResult(
        policy=spec.name,
        replicate=replicate,
        rounds=out_rounds,
        cumulative_reward=out_reward,
        cumulative_regret=out_regret,
        allocation=out_alloc,
        pulls=out_pulls,
        learned=out_learned,
        best_arm=int(np.argmax(final_means)),
        rules={k: v for o in observers for k, v in o.result().items()},
        final_state=states[0] if n_states == 1 else None,
        update_errors=tuple(update_errors),
    )
    if log is not None:
        frozen = log.freeze()
        result.log = frozen if keep_log else None
        if scenario.estimate_arms:
            result.arm_estimates = estimate_arms(frozen, scenario.feedback)
    if tracker is not None:
        result.winner, result.winner_round, result.winner_correct = tracker.outcome()
    result.seconds = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class ArmEstimates:
    """Each arm's value estimated from one replicate's own logs, next to the truth.

    truth[a]: the mean over the logged rounds of arm a's expected *learned* reward (what
    "always serve a" would have logged on average in those rounds and contexts: with
    [feedback], an outcome is logged only when on time, else the default reward). naive[a]:
    the mean reward of the rounds that served a (NaN if never served). ips[a]: the
    inverse-propensity estimate (1/n) sum 1{a_i = a} r_i / p_i with its 95% CI
    (app.stats.ope.InversePropensityScore; no CI when every term is equal).
    """

    truth: FloatArray
    naive: FloatArray
    ips: FloatArray
    ips_ci_low: FloatArray
    ips_ci_high: FloatArray
    pulls: IntArray


def estimate_arms(log: DecisionLog, feedback: Feedback | None) -> ArmEstimates:
    n_arms = log.probabilities.shape[1]
    pulls = np.bincount(log.arm, minlength=n_arms)
    sums = np.bincount(log.arm, weights=log.reward, minlength=n_arms)
    naive = np.divide(sums, pulls, out=np.full(n_arms, np.nan), where=pulls > 0)
    ips = np.full(n_arms, np.nan)
    low = np.full(n_arms, -np.inf)
    high = np.full(n_arms, np.inf)
    for arm in range(n_arms):
        if pulls[arm] == 0:
            continue
        target = (log.arm == arm).astype(np.float64)
        feedback_log = LoggedFeedback(
            reward=log.reward, propensity=log.propensity, target_probability=target
        )
        try:
            interval = InversePropensityScore().estimate_interval(feedback_log)
        except StatsInputError:  # every term equal (e.g. all rewards 0): no interval
            ips[arm] = InversePropensityScore().estimate_policy_value(feedback_log)
        else:
            ips[arm], low[arm], high[arm] = interval.estimate, interval.ci_low, interval.ci_high
    # What the logs record is the learned reward: the outcome when on time, else the default.
    on_time = feedback.on_time_probability() if feedback is not None else 1.0
    default = feedback.default_reward if feedback is not None else 0.0
    truth = on_time * log.expected.mean(axis=0) + (1.0 - on_time) * default
    return ArmEstimates(
        truth=truth, naive=naive, ips=ips, ips_ci_low=low, ips_ci_high=high, pulls=pulls
    )


def _choose(u: FloatArray, table: FloatArray, state_of: IntArray) -> IntArray:
    # The uniforms are in [0, 1) by construction and every row is a PolicyState's validated
    # vector: the unchecked core of arms_for_uniforms (same rule, tested equal) suffices.
    if table.shape[0] == 1:
        return inverse_cdf_arms(u, table[0])
    arms = np.empty(u.size, dtype=np.intp)
    for s in range(table.shape[0]):
        mask = state_of == s
        if mask.any():
            arms[mask] = inverse_cdf_arms(u[mask], table[s])
    return arms


def _delays(feedback: Feedback | None, rng: np.random.Generator, n: int) -> FloatArray:
    """Seconds from each decision to its outcome (drawn even when unused: same streams)."""
    u = rng.random(n)
    if feedback is None or feedback.delay == "none":
        return np.zeros(n)
    if feedback.delay == "fixed":
        return np.full(n, feedback.delay_s)
    if feedback.delay == "uniform":
        result: FloatArray = u * feedback.delay_s
        return result
    exponential: FloatArray = -feedback.delay_s * np.log1p(-u)
    return exponential


def sufficient_sums(
    groups: IntArray, arms: IntArray, rewards: FloatArray, shape: tuple[int, ...]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per (group, arm), shape (groups, arms): count, sum and sum of squares of the rewards."""
    cell = groups * shape[1] + arms
    size = shape[0] * shape[1]
    count: FloatArray = np.bincount(cell, minlength=size).reshape(shape).astype(np.float64)
    total = np.bincount(cell, weights=rewards, minlength=size).astype(np.float64)
    squares = np.bincount(cell, weights=rewards * rewards, minlength=size).astype(np.float64)
    return count, total.reshape(shape), squares.reshape(shape)


def arm_stats_rows(
    count: FloatArray, total: FloatArray, squares: FloatArray
) -> list[list[ArmStats]]:
    """One list of per-arm ArmStats per group, as policies take them."""
    return [
        [ArmStats(int(n), float(t), float(q)) for n, t, q in zip(*row, strict=True)]
        for row in zip(count, total, squares, strict=True)
    ]


def standard_error(values: FloatArray) -> float:
    """Standard error of the mean of `values` (NaN with fewer than 2)."""
    return float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan


class _Learner:
    """The service learner's bookkeeping: which decisions are closed, and their statistics."""

    def __init__(
        self, env: Environment, feedback: Feedback | None, horizon: int, n_states: int
    ) -> None:
        self.feedback = feedback
        self.lag_decisions: Fraction | None = None
        if (fb := feedback) is not None:
            # Scenario values are decimals (TOML): repr gives back the digits written.
            decimal = [
                Fraction(repr(v))
                for v in (fb.reward_window_s, fb.learner_lag_s, fb.decisions_per_second)
            ]
            self.lag_decisions = (decimal[0] + decimal[1]) * decimal[2]
        self.n_arms = env.n_arms
        self.state_of = np.zeros(horizon, dtype=np.intp)
        self.arm = np.zeros(horizon, dtype=np.intp)
        self.reward = np.zeros(horizon)
        self.learned = 0
        self.count = np.zeros((n_states, env.n_arms))
        self.total = np.zeros((n_states, env.n_arms))
        self.squares = np.zeros((n_states, env.n_arms))

    def record(
        self,
        start: int,
        state_of: IntArray,
        arms: IntArray,
        rewards: FloatArray,
        delays: FloatArray,
    ) -> None:
        end = start + arms.size
        self.state_of[start:end] = state_of
        self.arm[start:end] = arms
        fb = self.feedback
        if fb is None:
            self.reward[start:end] = rewards
        else:
            # An outcome later than the window is late: kept, never learned from.
            self.reward[start:end] = np.where(
                delays <= fb.reward_window_s, rewards, fb.default_reward
            )

    def learned_reward(self, start: int, n: int) -> FloatArray:
        return self.reward[start : start + n]

    def close_through(self, rounds_played: int) -> list[list[ArmStats]]:
        """Count the decisions closed when `rounds_played` decisions have been made."""
        if self.lag_decisions is None:
            closed = rounds_played
        else:
            # Decision i is made at i / rate and closed at T = rounds_played / rate when
            # i / rate <= T - window - lag, i.e. i <= rounds_played - (window + lag) * rate,
            # in exact (decimal) arithmetic so that a decision on the boundary counts, as in
            # the service (decided_at <= closed_through).
            last = math.floor(rounds_played - self.lag_decisions)
            closed = min(rounds_played, max(0, last + 1))
        if closed > self.learned:
            span = slice(self.learned, closed)
            count, total, squares = sufficient_sums(
                self.state_of[span], self.arm[span], self.reward[span], self.count.shape
            )
            self.count += count
            self.total += total
            self.squares += squares
            self.learned = closed
        return arm_stats_rows(self.count, self.total, self.squares)

    def pooled(self) -> list[SampleStats]:
        n, t, q = self.count.sum(axis=0), self.total.sum(axis=0), self.squares.sum(axis=0)
        return [SampleStats(int(a), float(b), float(c)) for a, b, c in zip(n, t, q, strict=True)]


class _LogBuffer:
    def __init__(self, horizon: int, n_arms: int) -> None:
        self.segment = np.zeros(horizon, dtype=np.intp)
        self.arm = np.zeros(horizon, dtype=np.intp)
        self.probabilities = np.zeros((horizon, n_arms))
        self.reward = np.zeros(horizon)
        self.expected = np.zeros((horizon, n_arms))

    def add(
        self,
        start: int,
        segments: IntArray,
        arms: IntArray,
        vectors: FloatArray,
        rewards: FloatArray,
        expected: FloatArray,
    ) -> None:
        span = slice(start, start + arms.size)
        self.segment[span] = segments
        self.arm[span] = arms
        self.probabilities[span] = vectors
        self.reward[span] = rewards
        self.expected[span] = expected

    def freeze(self) -> DecisionLog:
        propensity = self.probabilities[np.arange(self.arm.size), self.arm]
        return DecisionLog(
            self.segment, self.arm, propensity, self.probabilities, self.reward, self.expected
        )


class _WinnerTracker:
    """The automatic-winner criterion (`WinnerRule`) on the learner's statistics."""

    def __init__(self, rule: WinnerRule, env: Environment) -> None:
        self.rule = rule
        self.env = env
        self.streak_arm: int | None = None
        self.streak = 0
        self.declared: tuple[int, int] | None = None

    def look(self, rounds: int, stats: Sequence[SampleStats]) -> None:
        if self.declared is not None:
            return
        leader = p_best_leader(
            stats,
            kind=metric_kind(self.env, stats),
            threshold=self.rule.p_best,
            min_samples=self.rule.min_samples,
            max_expected_loss=self.rule.max_expected_loss,
        )
        if leader is None:
            self.streak_arm, self.streak = None, 0
            return
        self.streak = self.streak + 1 if self.streak_arm == leader else 1
        self.streak_arm = leader
        if self.streak >= self.rule.hold_updates:
            self.declared = (leader, rounds)

    def outcome(self) -> tuple[int | None, int | None, bool | None]:
        if self.declared is None:
            return None, None, None
        arm, rounds = self.declared
        # Strictly best, as in the decision-rule studies: declaring one of tied arms (an A/A
        # test) is a false winner.
        return arm, rounds, is_strictly_best(self.env.average_means(rounds - 1), arm)


# --- many replicates -------------------------------------------------------------------------


@dataclass
class SimulationResult:
    scenario: Scenario
    replicates: list[ReplicateResult]
    seconds: float = 0.0

    def by_policy(self) -> Iterator[tuple[str, list[ReplicateResult]]]:
        for spec in self.scenario.policies:
            yield spec.name, [r for r in self.replicates if r.policy == spec.name]

    def checkpoints(self) -> pd.DataFrame:
        """One row per (policy, replicate, checkpoint): the per-round metrics at each update."""
        frames = []
        for r in self.replicates:
            columns: dict[str, Any] = {
                "policy": r.policy,
                "replicate": r.replicate,
                "round": r.rounds,
                "learned": r.learned,
                "cumulative_reward": r.cumulative_reward,
                "cumulative_regret": r.cumulative_regret,
            }
            for a in range(r.allocation.shape[1]):
                columns[f"allocation_{a}"] = r.allocation[:, a]
            for a in range(r.pulls.shape[1]):
                columns[f"pulls_{a}"] = r.pulls[:, a]
            frames.append(pd.DataFrame(columns))
        return pd.concat(frames, ignore_index=True)

    def replicates_frame(self) -> pd.DataFrame:
        """One row per (policy, replicate): final regret and reward, declared winner, time."""
        return pd.DataFrame(
            [
                {
                    "policy": r.policy,
                    "replicate": r.replicate,
                    "rounds": int(r.rounds[-1]),
                    "final_regret": r.final_regret,
                    "mean_reward": float(r.cumulative_reward[-1] / r.rounds[-1]),
                    "best_arm": r.best_arm,
                    "winner": r.winner,
                    "winner_round": r.winner_round,
                    "winner_correct": r.winner_correct,
                    "seconds": r.seconds,
                }
                for r in self.replicates
            ]
        )

    def summary(self) -> pd.DataFrame:
        """One row per policy: regret, reward, and how the winner criterion fared."""
        rows = []
        for name, results in self.by_policy():
            regret = np.array([r.final_regret for r in results])
            reward = np.array([r.cumulative_reward[-1] / r.rounds[-1] for r in results])
            declared = [r for r in results if r.winner is not None]
            row: dict[str, Any] = {
                "policy": name,
                "replicates": len(results),
                "final_regret_mean": regret.mean(),
                "final_regret_se": standard_error(regret),
                "mean_reward": reward.mean(),
                # Share of all decisions served to the arm that is best on average at the end.
                "best_arm_share": float(
                    np.mean([r.pulls[-1, r.best_arm] / r.rounds[-1] for r in results])
                ),
            }
            if self.scenario.winner is not None:
                row["winner_declared"] = len(declared) / len(results)
                row["wrong_winner"] = sum(1 for r in declared if not r.winner_correct) / len(
                    results
                )
                row["median_rounds_to_winner"] = (
                    float(np.median([r.winner_round for r in declared])) if declared else math.nan
                )
            rows.append(row)
        return pd.DataFrame(rows)


def _run_task(scenario: Scenario, index: int, replicate: int, keep_log: bool) -> ReplicateResult:
    spec = scenario.policies[index]
    observers: list[Observer] = []
    if scenario.decision_rules is not None:
        from simulations.rules import tracker_for  # decision-rule studies only

        observers.append(tracker_for(scenario))
    return run_replicate(scenario, spec, replicate, keep_log=keep_log, observers=observers)


def run(
    scenario: Scenario,
    *,
    workers: int | None = None,
    progress: bool = False,
    keep_log: bool = False,
) -> SimulationResult:
    """Every policy x every replicate, in parallel over the machine's cores."""
    started = time.perf_counter()
    tasks = [(i, rep) for rep in range(scenario.replicates) for i in range(len(scenario.policies))]
    workers = workers or os.cpu_count() or 1
    results: list[ReplicateResult] = []
    bar = _progress(len(tasks), scenario.name) if progress else None
    if workers == 1 or len(tasks) == 1:
        for i, rep in tasks:
            results.append(_run_task(scenario, i, rep, keep_log))
            if bar is not None:
                bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            futures = [pool.submit(_run_task, scenario, i, rep, keep_log) for i, rep in tasks]
            for future in as_completed(futures):
                results.append(future.result())
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    order = {spec.name: i for i, spec in enumerate(scenario.policies)}
    results.sort(key=lambda r: (order[r.policy], r.replicate))
    return SimulationResult(scenario, results, time.perf_counter() - started)


def _progress(total: int, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="run")
