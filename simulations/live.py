"""Live mode: play a scenario against a running Croupier server, then compare with the simulation.

`run_live` creates an experiment matching the scenario (arms "arm-0".."arm-{K-1}", the policy
spec's type and parameters, the scenario's salt), starts it, and plays `horizon` rounds in
blocks of `update_interval` decisions over HTTP:

1. the environment's per-round draws (segment, reward noise, outcome delay) come from the very
   seeded streams `engine.run_replicate` uses for the same (seed, replicate);
2. one batch request decides the whole block, each decision with
   `decision_id = engine.decision_id(replicate, i)`, so with `uniforms = "hash"` the service
   hashes exactly what the simulation hashes;
3. the rewards of the served arms are posted as outcomes at once: an outcome the scenario
   delays beyond its reward window is posted with a timestamp after the service's window, so
   the service flags it late and learns the default reward instead, as the simulation does;
4. the client waits until the server's learner has published a version counting the whole
   block, and until the deciders serve it, before the next block: one update per block, as in
   the simulation.

`compare` then sets the live run against the in-process replicates of the same scenario:
per-arm pull shares as z-scores against the replicates' spread, and (with `uniforms = "hash"`)
the exact decision-for-decision check against the replicate with the same index.

What live mode does not reproduce: the simulation's virtual clock. With a [feedback] table the
engine's learner, at the end of a block, only counts the decisions made more than
`reward_window_s + learner_lag_s` (virtual) seconds earlier and leaves the block's tail for the
next update. Here every decision of a block shares one `decided_at` (one batch request) and the
client waits for the block to close, so each update counts the whole block, as the engine does
without [feedback]. Outcome delays only decide whether an outcome is late.
"""

from __future__ import annotations

import re
import secrets
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from simulations.engine import (
    ReplicateResult,
    SimulationResult,
    decision_id,
    environment_draws,
    run_replicate,
)
from simulations.scenario import GREEDY, PolicySpec, Scenario

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

SERVICE_SALT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
CHUNK = 2_000
"""Decisions or outcomes per request (the service takes up to 10,000 and 1 MiB)."""
MIN_UPDATE_INTERVAL_S = 1.0
"""The service's smallest `update_interval_s`."""


class LiveError(RuntimeError):
    """The server refused something, or did not learn in time."""


class Clock(Protocol):
    """Time as live mode needs it (a fake one makes the waiting testable)."""

    def now(self) -> datetime:
        """The current UTC instant, on the same clock as the server's."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# --- results -----------------------------------------------------------------------------------


@dataclass
class LiveResult:
    """One live replicate: what the server served, block by block and decision by decision."""

    scenario: Scenario
    policy: str
    replicate: int
    experiment_key: str
    id_prefix: str
    """The decision ids' prefix (`engine.decision_id`): new for every run, since the service
    refuses a decision id it has stored."""
    rounds: IntArray
    """Rounds played at the end of each block."""
    allocation: FloatArray
    """(blocks, K): mean served probability vector over each block (the service's vectors)."""
    pulls: IntArray
    """(blocks, K): cumulative decisions per arm."""
    cumulative_reward: FloatArray
    cumulative_regret: FloatArray
    block_versions: list[tuple[int, ...]]
    """Policy versions that served each block (one each when the batching matched)."""
    versions: dict[int, FloatArray]
    """Every policy version seen: its probability vector."""
    arms: IntArray
    propensity: FloatArray
    served_version: IntArray
    reward: FloatArray
    """The reward the server's learner counts (default_reward for a late outcome)."""
    propensity_mismatches: int = 0
    """Decisions whose propensity is not their version's vector entry (must be 0)."""
    stale_decisions: int = 0
    """Decisions served by a version older than the newest published (must be 0)."""
    split_updates: int = 0
    """Learner versions that counted part of a block only (must be 0)."""
    non_experimental: int = 0
    outcome_counts: dict[str, int] = field(default_factory=dict)
    outcome_mismatches: int = 0
    """Outcomes whose status (accepted / late) is not what the scenario's delay implies."""
    seconds: float = 0.0

    @property
    def block(self) -> int:
        return self.scenario.update_interval


# --- driving the server ------------------------------------------------------------------------


def _pick_spec(scenario: Scenario, policy: str | None) -> PolicySpec:
    if policy is None:
        if len(scenario.policies) != 1:
            names = ", ".join(p.name for p in scenario.policies)
            raise ValueError(f"the scenario has several policies ({names}); name one")
        spec = scenario.policies[0]
    else:
        found = [p for p in scenario.policies if p.name == policy]
        if not found:
            raise ValueError(f"the scenario has no policy named {policy!r}")
        spec = found[0]
    if spec.kind == GREEDY:
        raise ValueError("policy type 'greedy' is study-only: the service does not serve it")
    if spec.per_segment:
        raise ValueError("per_segment policies are simulation-only: the service has none")
    return spec


def experiment_body(
    scenario: Scenario,
    spec: PolicySpec,
    *,
    key: str,
    reward_window_s: float,
    update_interval_s: float,
) -> dict[str, Any]:
    """The create-experiment request matching the scenario and policy."""
    n_arms = scenario.environment.n_arms
    variants: list[dict[str, Any]] = [
        {"key": f"arm-{a}", "is_control": a == 0} for a in range(n_arms)
    ]
    if spec.weights is not None:
        for variant, weight in zip(variants, spec.weights, strict=True):
            variant["weight"] = weight
    body: dict[str, Any] = {
        "key": key,
        "name": f"live {scenario.name} / {spec.name}",
        "variants": variants,
        "policy": {"type": spec.kind, **spec.params, "update_interval_s": update_interval_s},
        "reward_window_s": reward_window_s,
        "default_reward": scenario.feedback.default_reward if scenario.feedback else 0.0,
    }
    if SERVICE_SALT.fullmatch(scenario.salt):
        body["salt"] = scenario.salt
    elif scenario.uniforms == "hash":
        raise ValueError(
            f"salt {scenario.salt!r} is not a valid service salt ([A-Za-z0-9_.-]{{1,64}}), "
            "so the service cannot hash what the simulation hashes"
        )
    return body


class _Api:
    def __init__(self, http: httpx.Client, clock: Clock, retries: int = 5) -> None:
        self.http = http
        self.clock = clock
        self.retries = retries

    def call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in range(self.retries):
            response = self.http.request(method, path, json=body)
            if response.status_code == 503 and attempt < self.retries - 1:
                # Not recorded (commit too slow for the safety lag): nothing stored, retry.
                self.clock.sleep(0.2)
                continue
            if response.status_code >= 400:
                raise LiveError(f"{method} {path}: {response.status_code} {response.text}")
            return response.json()
        raise AssertionError("unreachable")

    def versions(self, key: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", f"/v1/experiments/{key}/policy-versions")
        return result


def _vector(version: Mapping[str, Any], n_arms: int) -> FloatArray:
    allocation = version["allocation"]
    return np.array([float(allocation[f"arm-{a}"]) for a in range(n_arms)])


def run_live(
    scenario: Scenario,
    *,
    base_url: str,
    api_key: str,
    policy: str | None = None,
    replicate: int = 0,
    experiment_key: str | None = None,
    id_prefix: str | None = None,
    clock: Clock | None = None,
    reward_window_s: float = 0.5,
    update_interval_s: float = MIN_UPDATE_INTERVAL_S,
    policy_check_s: float = 1.1,
    version_timeout_s: float = 60.0,
    http: httpx.Client | None = None,
) -> LiveResult:
    """Play replicate `replicate` of `scenario` (policy `policy`) against the server.

    Args:
        reward_window_s: the experiment's reward window on the server, in real seconds. Each
            block waits about reward_window_s + the server's CROUPIER_LEARNER_SAFETY_LAG_S
            for its decisions to close. The scenario's own window (virtual seconds) only
            decides which outcomes are late.
        update_interval_s: the experiment's update interval. The client drives one block per
            learner update, so the smallest the service allows (1 s) keeps the pace; a longer
            one only slows the run down.
        policy_check_s: how long to wait, after a new version is published, for the deciders
            to serve it: more than the server's CROUPIER_POLICY_CHECK_INTERVAL_S.
        id_prefix: the decision ids' prefix (default: a fresh random one). The service refuses
            a decision id it has stored, so two runs against one database need two prefixes;
            a fixed one makes a run against a fresh database reproducible.
        http: a client to use (base_url and api_key are then ignored).
    """
    started = time.perf_counter()
    clock = clock or SystemClock()
    spec = _pick_spec(scenario, policy)
    env = scenario.environment
    n_arms, horizon = env.n_arms, scenario.horizon
    key = experiment_key or f"live-{spec.name}-{replicate}-{secrets.token_hex(4)}"
    key = re.sub(r"[^A-Za-z0-9_.\-]", "-", key)[:64]
    id_prefix = id_prefix or f"live-{secrets.token_hex(6)}"
    feedback = scenario.feedback

    own_client = http is None
    client = http or httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60.0
    )
    api = _Api(client, clock)
    blocks = -(-horizon // scenario.update_interval)
    out_rounds = np.zeros(blocks, dtype=np.intp)
    out_alloc = np.zeros((blocks, n_arms))
    out_pulls = np.zeros((blocks, n_arms), dtype=np.intp)
    out_reward = np.zeros(blocks)
    out_regret = np.zeros(blocks)
    arms_all = np.zeros(horizon, dtype=np.intp)
    propensity_all = np.zeros(horizon)
    version_all = np.zeros(horizon, dtype=np.intp)
    reward_all = np.zeros(horizon)
    result = LiveResult(
        scenario=scenario,
        policy=spec.name,
        replicate=replicate,
        experiment_key=key,
        id_prefix=id_prefix,
        rounds=out_rounds,
        allocation=out_alloc,
        pulls=out_pulls,
        cumulative_reward=out_reward,
        cumulative_regret=out_regret,
        block_versions=[],
        versions={},
        arms=arms_all,
        propensity=propensity_all,
        served_version=version_all,
        reward=reward_all,
    )
    try:
        api.call(
            "POST",
            "/v1/experiments",
            experiment_body(
                scenario,
                spec,
                key=key,
                reward_window_s=reward_window_s,
                update_interval_s=update_interval_s,
            ),
        )
        api.call("POST", f"/v1/experiments/{key}/start")
        for v in api.versions(key):
            result.versions[int(v["number"])] = _vector(v, n_arms)
        newest = max(result.versions)
        pulls = np.zeros(n_arms, dtype=np.intp)
        total_reward = total_regret = 0.0
        counts: dict[str, int] = {}

        for c, draws in enumerate(environment_draws(scenario, replicate, id_prefix=id_prefix)):
            n = draws.rounds.size
            items = [
                {
                    "unit_id": f"sim-unit-{replicate}-{int(i)}",
                    "decision_id": decision_id(replicate, int(i), id_prefix),
                    **({"context": {"segment": int(s)}} if env.n_segments > 1 else {}),
                }
                for i, s in zip(draws.rounds, draws.segments, strict=True)
            ]
            answers: list[dict[str, Any]] = []
            for lo in range(0, n, CHUNK):
                answers += api.call(
                    "POST",
                    f"/v1/experiments/{key}/decisions/batch",
                    {"items": items[lo : lo + CHUNK]},
                )["items"]
            decided_by = clock.now()  # every decision of the block was made before this
            arms = np.array([int(a["variant"].removeprefix("arm-")) for a in answers])
            served_versions = np.array([int(a["policy_version"]) for a in answers])
            propensity = np.array([float(a["propensity"]) for a in answers])
            result.non_experimental += sum(1 for a in answers if not a["experimental"])
            result.stale_decisions += int(np.count_nonzero(served_versions != newest))
            if set(served_versions.tolist()) - set(result.versions):
                result.versions.update(
                    {int(v["number"]): _vector(v, n_arms) for v in api.versions(key)}
                )
            vectors = np.array([result.versions[int(v)] for v in served_versions])
            result.propensity_mismatches += int(
                np.count_nonzero(vectors[np.arange(n), arms] != propensity)
            )

            expected = env.means(draws.rounds, draws.segments)
            served = expected[np.arange(n), arms]
            rewards = env.draw(served, draws.noise)
            on_time = (
                np.ones(n, dtype=bool)
                if feedback is None
                else draws.delays <= feedback.reward_window_s
            )
            late_stamp = (decided_by + timedelta(seconds=reward_window_s + 1.0)).isoformat()
            outcomes = [
                {"decision_id": d["decision_id"], "value": float(r)}
                | ({} if ok else {"timestamp": late_stamp})
                for d, r, ok in zip(items, rewards, on_time, strict=True)
            ]
            statuses: list[str] = []
            for lo in range(0, n, CHUNK):
                statuses += [
                    s["status"]
                    for s in api.call(
                        "POST", "/v1/outcomes/batch", {"items": outcomes[lo : lo + CHUNK]}
                    )["items"]
                ]
            for status in statuses:
                counts[status] = counts.get(status, 0) + 1
            wanted = np.where(on_time, "accepted", "late")
            result.outcome_mismatches += int(np.count_nonzero(np.array(statuses) != wanted))

            span = slice(draws.start, draws.start + n)
            arms_all[span] = arms
            propensity_all[span] = propensity
            version_all[span] = served_versions
            default = feedback.default_reward if feedback is not None else 0.0
            reward_all[span] = np.where(on_time, rewards, default)
            pulls += np.bincount(arms, minlength=n_arms)
            total_reward += float(rewards.sum())
            total_regret += float((expected.max(axis=1) - served).sum())
            out_rounds[c] = draws.start + n
            out_alloc[c] = vectors.mean(axis=0)
            out_pulls[c] = pulls
            out_reward[c] = total_reward
            out_regret[c] = total_regret
            result.block_versions.append(tuple(sorted(set(served_versions.tolist()))))

            if c < blocks - 1:
                newest = _await_update(
                    api, key, newest, draws.start + n, result, clock, version_timeout_s
                )
                clock.sleep(policy_check_s)
        result.outcome_counts = counts
    finally:
        if own_client:
            client.close()
    result.seconds = time.perf_counter() - started
    return result


def _await_update(
    api: _Api,
    key: str,
    newest: int,
    decided: int,
    result: LiveResult,
    clock: Clock,
    timeout_s: float,
) -> int:
    """Wait for the version that counts every decision made so far; returns its number."""
    deadline = clock.monotonic() + timeout_s
    n_arms = result.scenario.environment.n_arms
    while True:
        fresh = [v for v in api.versions(key) if int(v["number"]) > newest]
        for v in fresh:
            number = int(v["number"])
            result.versions[number] = _vector(v, n_arms)
            newest = max(newest, number)
            if int(v["decisions_counted"]) < decided:
                result.split_updates += 1
            elif int(v["decisions_counted"]) == decided:
                return newest
            else:
                raise LiveError(
                    f"version {number} counted {v['decisions_counted']} decisions; "
                    f"only {decided} were made"
                )
        if clock.monotonic() > deadline:
            raise LiveError(
                f"no policy version counting all {decided} decisions within {timeout_s:g}s: "
                "is the server's learner enabled?"
            )
        clock.sleep(0.05)


# --- comparing with the simulation -------------------------------------------------------------


@dataclass(frozen=True)
class ArmAgreement:
    arm: int
    live_share: float
    mean: float
    """Mean pull share of the arm over the in-process replicates (all but the one with the
    live run's index, which shares its world and is not an independent draw)."""
    sd: float
    """Standard deviation of that share across replicates (the Monte-Carlo error of one run)."""
    z: float


@dataclass(frozen=True)
class Comparison:
    arms: tuple[ArmAgreement, ...]
    replicates: int
    alpha: float
    bound: float
    """Bonferroni-corrected two-sided normal bound: every |z| must stay below it."""
    agree: bool
    first_block_identical: bool | None
    """With uniforms = "hash": the first block's arms equal the same replicate's, decision for
    decision (same initial state, same hash). None when the check does not apply."""
    identical_decisions: int | None = None
    """With uniforms = "hash": how many of the horizon's decisions served the same arm as the
    in-process replicate with the same index (all, when service and simulation are one)."""
    first_divergence: int | None = None
    allocation_max_abs_diff: float | None = None
    """Largest difference, over every decision, between the probability vector the server
    served and the one the same in-process replicate served (0 when they are one)."""

    @property
    def max_abs_z(self) -> float:
        return max(abs(a.z) for a in self.arms)


def _same_replicate(live: LiveResult, offline: SimulationResult) -> ReplicateResult:
    """The in-process twin of the live run: same replicate, same decision ids."""
    spec = _pick_spec(offline.scenario, live.policy)
    return run_replicate(
        offline.scenario, spec, live.replicate, keep_log=True, id_prefix=live.id_prefix
    )


def compare(live: LiveResult, offline: SimulationResult, *, alpha: float = 0.01) -> Comparison:
    """The live run against the in-process replicates of the same scenario and policy."""
    scenario = offline.scenario
    if (scenario.horizon, scenario.update_interval) != (
        live.scenario.horizon,
        live.scenario.update_interval,
    ):
        raise ValueError("the live run and the simulation play different horizons or blocks")
    # The replicate with the live run's index meets the same world (contexts, reward noise,
    # delays): it is correlated with the live run, not an independent draw.
    replicates = [
        r for r in offline.replicates if r.policy == live.policy and r.replicate != live.replicate
    ]
    if len(replicates) < 2:
        raise ValueError(f"need >= 2 other in-process replicates of policy {live.policy!r}")
    shares = np.array([r.pulls[-1] / r.rounds[-1] for r in replicates])
    live_share = live.pulls[-1] / live.rounds[-1]
    mean, sd = shares.mean(axis=0), shares.std(axis=0, ddof=1)
    n_arms = live_share.size
    bound = statistics.NormalDist().inv_cdf(1.0 - alpha / (2 * n_arms))
    arms = []
    for a in range(n_arms):
        diff = float(live_share[a] - mean[a])
        if sd[a] > 0:
            z = diff / float(sd[a])
        else:
            z = 0.0 if abs(diff) < 1e-12 else float("inf") * np.sign(diff)
        arms.append(ArmAgreement(a, float(live_share[a]), float(mean[a]), float(sd[a]), z))
    agree = all(abs(a.z) < bound for a in arms)

    first_block: bool | None = None
    identical: int | None = None
    divergence: int | None = None
    alloc_diff: float | None = None
    if scenario.uniforms == "hash" and scenario.salt == live.scenario.salt:
        reference = _same_replicate(live, offline)
        assert reference.log is not None
        ref_arms = reference.log.arm
        b = min(scenario.update_interval, scenario.horizon)
        first_block = bool(np.array_equal(live.arms[:b], ref_arms[:b]))
        same = live.arms == ref_arms
        identical = int(np.count_nonzero(same))
        divergence = None if same.all() else int(np.argmin(same))
        # Decision by decision: the vector the server served against the simulation's.
        served = np.array([live.versions[int(v)] for v in live.served_version])
        alloc_diff = float(np.abs(served - reference.log.probabilities).max())
    return Comparison(
        arms=tuple(arms),
        replicates=len(replicates),
        alpha=alpha,
        bound=bound,
        agree=agree,
        first_block_identical=first_block,
        identical_decisions=identical,
        first_divergence=divergence,
        allocation_max_abs_diff=alloc_diff,
    )


def format_comparison(comparison: Comparison) -> str:
    """A few lines for a terminal."""
    lines = [
        f"arm  live   mean   sd     z      (bound {comparison.bound:.2f}, "
        f"{comparison.replicates} replicates)"
    ]
    for a in comparison.arms:
        lines.append(f"{a.arm:<4} {a.live_share:.3f}  {a.mean:.3f}  {a.sd:.3f}  {a.z:+.2f}")
    lines.append(f"agree: {comparison.agree}")
    if comparison.first_block_identical is not None:
        lines.append(
            f"first block identical: {comparison.first_block_identical}; identical decisions: "
            f"{comparison.identical_decisions}; allocation max |diff|: "
            f"{comparison.allocation_max_abs_diff:.3g}"
        )
    return "\n".join(lines)


__all__: Sequence[str] = (
    "ArmAgreement",
    "Clock",
    "Comparison",
    "LiveError",
    "LiveResult",
    "SystemClock",
    "compare",
    "experiment_body",
    "format_comparison",
    "run_live",
)
