"""Off-policy evaluation: what a target policy would have earned, estimated from logged decisions.

Croupier logs, for every decision i, the served action a_i, its exact propensity
p_i = pi_0(a_i | x_i) and the reward r_i. A target policy pi is scored by the probability it
gives the logged action, pi(a_i | x_i), through the importance weight w_i = pi(a_i|x_i) / p_i.
Definitions follow Dudik, Langford & Li (2011) and Open Bandit Pipeline
(st-tech/zr-obp, obp/ope/estimators.py); V(pi) = E_x E_{a ~ pi(.|x)} E[r | x, a]:

    IPS     mean_i  min(w_i, M) r_i                  (Horvitz-Thompson; M = inf: no clipping)
    SNIPS   sum_i w_i r_i / sum_i w_i                (Hajek; Swaminathan & Joachims 2015)
    DM      mean_i  qhat(x_i, pi)                    qhat(x, pi) = sum_a pi(a|x) qhat(x, a)
    DR      mean_i [qhat(x_i, pi) + min(w_i, M) (r_i - qhat(x_i, a_i))]   (Dudik et al. 2011)

IPS and DR are unbiased whenever the propensities are the probabilities the actions were really
served with and pi_0 > 0 wherever pi > 0, also when pi_0 changes over time with past data (a
bandit): E[w_i r_i | past] = V(pi) round by round. Clipping (M < inf) trades that for variance.
DM is only as good as its reward model; DR is unbiased if either the propensities or the model
are right. Each point estimate is a mean of per-round terms (SNIPS a ratio of means), so its CI
is the normal approximation mean +- z * sd / sqrt(n) (SNIPS: delta method).

Undefined statistics raise StatsInputError, never NaN and never a fake "0 +- 0": every
estimator refuses a log in which no importance weight is positive (effective sample size 0:
the log says nothing about the target policy), and every interval refuses terms without
variation (e.g. all rewards 0), whose zero sample variance is no evidence of zero uncertainty.

`ips_confidence_sequence` and `arm_values` add anytime-valid confidence sequences on the IPS
estimate (the docstrings give the assumptions), so arms can be compared after every batch.
docs/statistics/off-policy.md explains how to read all of it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special

from app.stats.sequential import asymptotic_cs_margin, asymptotic_cs_rho_squared
from app.stats.sufficient import StatsInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
CSMethod = Literal["empirical_bernstein", "asymptotic"]

BET_CAP = 0.5
"""Largest bet lambda_i of the empirical-Bernstein CS (Waudby-Smith & Ramdas 2023 use 1/2)."""

ASYMPTOTIC_MIN_ROUNDS = 500
"""Rounds before the asymptotic CS reports finite bounds (earlier rounds get (-inf, inf)).

Chosen by simulation (docs/statistics/off-policy.md): greedy bandits with a 0.1 or 0.05 floor,
3 Bernoulli arms, 500 runs each; checked from round 1 the unguarded CS missed up to 31% at
alpha 5%, with this guard at most 6.2% (within Monte-Carlo error of 5%); 300 was not enough."""

_RELATIVE_SPREAD = 1e-12
"""Terms whose spread is below this fraction of their magnitude count as constant (rounding)."""


@dataclass(frozen=True, slots=True)
class LoggedFeedback:
    """Logged decisions, one entry per round, in the order they were made.

    reward_model_logged[i] = qhat(x_i, a_i) and reward_model_target[i] = sum_a pi(a|x_i)
    qhat(x_i, a) are only needed by the direct method and doubly robust.
    """

    reward: FloatArray
    propensity: FloatArray
    target_probability: FloatArray
    reward_model_logged: FloatArray | None = None
    reward_model_target: FloatArray | None = None

    def __post_init__(self) -> None:
        fields = {
            "reward": self.reward,
            "propensity": self.propensity,
            "target_probability": self.target_probability,
            "reward_model_logged": self.reward_model_logged,
            "reward_model_target": self.reward_model_target,
        }
        given = {name: _vector(name, v) for name, v in fields.items() if v is not None}
        lengths = {name: v.size for name, v in given.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{name} {size}" for name, size in lengths.items())
            raise StatsInputError(f"every array needs one entry per logged round, got {listed}")
        if lengths["reward"] == 0:
            raise StatsInputError("the log is empty: off-policy estimates need logged rounds")
        if (self.reward_model_logged is None) != (self.reward_model_target is None):
            raise StatsInputError(
                "give both reward_model_logged (qhat at the logged action) and "
                "reward_model_target (qhat averaged over the target policy), or neither"
            )
        _require_in("propensity", given["propensity"], 0.0, 1.0, open_low=True)
        _require_in("target_probability", given["target_probability"], 0.0, 1.0)
        for name, array in given.items():
            object.__setattr__(self, name, _read_only(array))

    @property
    def n(self) -> int:
        return int(self.reward.size)

    def importance_weights(self, clip: float = math.inf) -> FloatArray:
        """w_i = pi(a_i|x_i) / pi_0(a_i|x_i), clipped at `clip` (OBP's lambda_)."""
        return np.minimum(self.target_probability / self.propensity, clip)


@dataclass(frozen=True, slots=True)
class PolicyValueEstimate:
    """A point estimate of V(pi) with a (1 - alpha) normal-approximation CI."""

    estimator: str
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    alpha: float
    n: int
    effective_sample_size: float


class OffPolicyEstimator(Protocol):
    """The interface of every estimator here (OBP's, with the log as one typed value)."""

    name: ClassVar[str]

    def estimate_policy_value(self, log: LoggedFeedback) -> float: ...

    def estimate_interval(
        self, log: LoggedFeedback, *, alpha: float = 0.05
    ) -> PolicyValueEstimate: ...


class _RoundwiseEstimator(ABC):
    """An estimator that is the mean of per-round terms, with the CLT interval on them."""

    __slots__ = ()
    name: ClassVar[str]

    @abstractmethod
    def round_values(self, log: LoggedFeedback) -> FloatArray:
        """The per-round terms whose mean is the estimate (each subclass's definition)."""

    def weights(self, log: LoggedFeedback) -> FloatArray:
        return log.importance_weights()

    def estimate_policy_value(self, log: LoggedFeedback) -> float:
        _require_overlap(self.name, log)
        return float(self.round_values(log).mean())

    def estimate_interval(self, log: LoggedFeedback, *, alpha: float = 0.05) -> PolicyValueEstimate:
        _require_overlap(self.name, log)
        terms = self.round_values(log)
        _require_interval_data(log.n, alpha)
        _require_variation(self.name, terms, log)
        std_error = float(terms.std(ddof=1)) / math.sqrt(log.n)
        return _estimate(self.name, float(terms.mean()), std_error, alpha, log, self.weights(log))


@dataclass(frozen=True, slots=True)
class InversePropensityScore(_RoundwiseEstimator):
    """IPS: mean of min(w_i, clip) r_i (Horvitz & Thompson 1952; OBP's IPW with lambda_)."""

    clip: float = math.inf
    name: ClassVar[str] = "ips"

    def __post_init__(self) -> None:
        _require_clip(self.clip)

    def weights(self, log: LoggedFeedback) -> FloatArray:
        return log.importance_weights(self.clip)

    def round_values(self, log: LoggedFeedback) -> FloatArray:
        values: FloatArray = self.weights(log) * log.reward
        return values


@dataclass(frozen=True, slots=True)
class SelfNormalizedIPS:
    """SNIPS: sum w_i r_i / sum w_i; consistent, bias O(1/n), never outside the reward range."""

    name: ClassVar[str] = "snips"

    def estimate_policy_value(self, log: LoggedFeedback) -> float:
        w = _normaliser(log)
        return float(np.dot(w, log.reward) / w.sum())

    def estimate_interval(self, log: LoggedFeedback, *, alpha: float = 0.05) -> PolicyValueEstimate:
        _require_interval_data(log.n, alpha)
        w = _normaliser(log)
        _require_variation(self.name, log.reward[w > 0.0], log)
        value = float(np.dot(w, log.reward) / w.sum())
        # Delta method for a ratio of means: Var ~ sum w_i^2 (r_i - V)^2 / (sum w_i)^2
        # (Hesterberg 1995; the sandwich variance of the Hajek estimator).
        std_error = float(np.linalg.norm(w * (log.reward - value)) / w.sum())
        return _estimate(self.name, value, std_error, alpha, log, w)


@dataclass(frozen=True, slots=True)
class DirectMethod(_RoundwiseEstimator):
    """DM: mean of the reward model under the target policy, qhat(x_i, pi).

    Its interval only reflects sampling of contexts: it is conditional on qhat and says
    nothing about the model's bias. Like the others it refuses a log with no positive
    importance weight (nothing in it checks qhat where the target policy acts), and it refuses
    an interval when qhat(x_i, pi) is the same in every round: "+- 0" there would read as
    certainty about V(pi) while all the uncertainty is the model's, which it cannot show.
    """

    name: ClassVar[str] = "dm"

    def round_values(self, log: LoggedFeedback) -> FloatArray:
        return _reward_model(log, self.name)[1]


@dataclass(frozen=True, slots=True)
class DoublyRobust(_RoundwiseEstimator):
    """DR: mean of qhat(x_i, pi) + min(w_i, clip) (r_i - qhat(x_i, a_i)) (Dudik et al. 2011)."""

    clip: float = math.inf
    name: ClassVar[str] = "dr"

    def __post_init__(self) -> None:
        _require_clip(self.clip)

    def weights(self, log: LoggedFeedback) -> FloatArray:
        return log.importance_weights(self.clip)

    def round_values(self, log: LoggedFeedback) -> FloatArray:
        logged, target = _reward_model(log, self.name)
        values: FloatArray = target + self.weights(log) * (log.reward - logged)
        return values


def effective_sample_size(weights: npt.ArrayLike) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (Kish 1965; Owen 2013, ch. 9).

    n for equal weights, down to 1 when one weight dominates; 0.0 when every weight is 0 (the
    target policy never chose a logged action, so the log says nothing about it).
    """
    w = _vector("weights", weights)
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise StatsInputError("importance weights must be finite and >= 0")
    squares = float(np.dot(w, w))
    return 0.0 if squares == 0.0 else float(w.sum()) ** 2 / squares


@dataclass(frozen=True, slots=True)
class ConfidenceSequence:
    """Bounds on V(pi) after each logged round, valid simultaneously for every round.

    `estimate` is the running (unclipped) IPS estimate; cs_low[t] <= V(pi) <= cs_high[t] holds for
    all t at once with probability >= 1 - alpha, so the bounds may be read after every batch
    and acted on at any time.
    """

    method: str
    alpha: float
    estimate: FloatArray
    cs_low: FloatArray
    cs_high: FloatArray


def ips_confidence_sequence(
    log: LoggedFeedback,
    *,
    alpha: float = 0.05,
    method: CSMethod = "empirical_bernstein",
    reward_range: tuple[float, float] = (0.0, 1.0),
    planned_n: int | None = None,
    min_rounds: int = ASYMPTOTIC_MIN_ROUNDS,
) -> ConfidenceSequence:
    """An anytime-valid (1 - alpha) confidence sequence for V(pi) from the IPS terms w_i r_i.

    Rows must be in the order the decisions were made. Both methods stay valid when the logging
    policy adapts to past data, provided each logged propensity is the probability the action
    was really served with and pi_0 > 0 wherever pi > 0: then E[w_i r_i | past] is the value of
    pi in round i (V(pi) itself if rewards are stationary). Weights are never clipped here.

    method="empirical_bernstein" (default) holds at every sample size. It needs rewards in a
    known `reward_range` [lo, hi] and a target policy whose probabilities sum to 1 over the
    actions (so E[w_i | past] = 1), but no bound on the weights. With r' = (r - lo) / (hi - lo),
    w r' and w (1 - r') are >= 0 with means V' and 1 - V'; each gets a one-sided lower bound at
    alpha / 2 from the empirical-Bernstein supermartingale (Howard et al. 2021, from an
    inequality of Fan, Grama & Liu 2015), which needs its terms bounded below only, with the
    predictable plug-in ("PrPl-EB") bets of Waudby-Smith & Ramdas (2023). Waudby-Smith, Wu,
    Ramdas, Karampatziakis & Mineiro (2024, "Anytime-valid off-policy inference for contextual
    bandits") use the same device for off-policy values. The bounds are intersected over time
    (still valid) and clipped to the reward range. `planned_n` (optional) tunes the bets to be
    tightest near that many rounds; without it they follow PrPl-EB's 1/sqrt(t log t) schedule,
    which is about twice as wide at a few thousand rounds. With drifting rewards it covers a
    bet-weighted average of the per-round values.

    method="asymptotic" is the Gaussian-mixture asymptotic CS of Waudby-Smith, Arbour, Sinha,
    Kennedy & Ramdas (2024, "Time-uniform central limit theory and asymptotic confidence
    sequences"): running mean +- sd_t sqrt(2 (t rho^2 + 1) / (t^2 rho^2) log(sqrt(t rho^2 + 1)
    / alpha)) with the closed-form rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / planned_n
    (`asymptotic_cs_rho_squared(planned_n, alpha, "approximate")` in sequential.py, which also
    gives the boundary), nearly the tightest possible at t = planned_n. planned_n is required
    and must be fixed in advance. It needs no reward bound but holds only as t grows: its
    martingale version needs Lindeberg-type terms, which bounded weights (a propensity floor
    p_min: w <= 1 / p_min) and bounded rewards give. It covers the running average of the
    per-round values. Its small-sample miscoverage is large (16-31% from round 1 at alpha 5% in
    our simulations), so rounds before `min_rounds` (default ASYMPTOTIC_MIN_ROUNDS = 500,
    measured for propensity floors >= 0.05; raise it for smaller floors) get (-inf, inf), as do
    rounds whose terms have had no variance yet. `min_rounds` is ignored by the
    empirical-Bernstein method.
    """
    _require_alpha(alpha)
    if planned_n is not None and (isinstance(planned_n, bool) or not planned_n >= 1):
        raise StatsInputError(f"planned_n must be a positive number of rounds, got {planned_n!r}")
    if (
        isinstance(min_rounds, bool)
        or not isinstance(min_rounds, int | np.integer)
        or min_rounds < 1
    ):
        raise StatsInputError(
            f"min_rounds must be a positive integer number of rounds, got {min_rounds!r}"
        )
    weights = log.importance_weights()
    terms = weights * log.reward
    rounds = np.arange(1, log.n + 1, dtype=np.float64)
    estimate = np.cumsum(terms) / rounds
    if method == "empirical_bernstein":
        low, high = _require_reward_range(log.reward, reward_range)
        scaled = (log.reward - low) / (high - low)
        # V' >= L(w r') and 1 - V' >= L(w (1 - r')), each at level alpha / 2.
        lower_scaled = np.maximum(_eb_lower_bound(weights * scaled, alpha / 2.0, planned_n), 0.0)
        upper_scaled = np.minimum(
            1.0 - _eb_lower_bound(weights * (1.0 - scaled), alpha / 2.0, planned_n), 1.0
        )
        lower = low + (high - low) * np.maximum.accumulate(lower_scaled)
        upper = low + (high - low) * np.minimum.accumulate(upper_scaled)
    elif method == "asymptotic":
        if planned_n is None:
            raise StatsInputError(
                "the asymptotic CS needs planned_n, the number of rounds it is tuned for, fixed "
                "before the data are seen (deriving it from the log at each look voids validity)"
            )
        if not math.isfinite(planned_n):
            raise StatsInputError(
                "the asymptotic CS needs a finite planned_n (rounds it is tuned for), "
                f"got {planned_n}"
            )
        half_width = _asymptotic_half_width(terms, alpha, planned_n)
        half_width[: int(min_rounds) - 1] = np.inf  # too early for the asymptotics to hold
        lower, upper = estimate - half_width, estimate + half_width
    else:
        raise StatsInputError(
            f"method must be 'empirical_bernstein' or 'asymptotic', got {method!r}"
        )
    return ConfidenceSequence(
        method, alpha, _read_only(estimate), _read_only(lower), _read_only(upper)
    )


@dataclass(frozen=True, slots=True)
class ArmValues:
    """Each arm's value (the target policy "always serve arm a"), estimated from bandit logs.

    With `simultaneous` the K confidence sequences hold together with probability >= 1 - alpha
    (Bonferroni, alpha / K each), so `beats()` may be read after every batch.

    An arm with no pulls has no data: its `estimate` is None (`<NA>` in `to_frame()`), and its
    std_error is inf and its CI and CS are (-inf, inf), which `beats()` never ranks. Other
    undefined statistics use the same uninformative infinities, never NaN or 0: an arm whose IPS
    terms are all equal (e.g. every reward 0) keeps its estimate and CS but gets std_error inf
    and CI (-inf, inf), since its sampling error cannot be estimated.
    """

    method: str
    alpha: float
    simultaneous: bool
    pulls: IntArray
    estimate: tuple[float | None, ...]
    std_error: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    cs_low: FloatArray
    cs_high: FloatArray
    effective_sample_size: FloatArray

    @property
    def available(self) -> BoolArray:
        """available[a]: arm a was pulled at least once, so it has an estimate to report."""
        result: BoolArray = self.pulls > 0
        return result

    def beats(self) -> BoolArray:
        """beats()[a, b]: arm a's CS lies entirely above arm b's (a is better, anytime-valid).

        An arm without data beats nothing and is beaten by nothing.
        """
        both = self.available[:, None] & self.available[None, :]
        result: BoolArray = both & (self.cs_low[:, None] > self.cs_high[None, :])
        return result

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "pulls": self.pulls,
                "estimate": pd.array(self.estimate, dtype="Float64"),
                "std_error": self.std_error,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "cs_low": self.cs_low,
                "cs_high": self.cs_high,
                "effective_sample_size": self.effective_sample_size,
            }
        ).rename_axis("arm")


def arm_values(
    actions: npt.ArrayLike,
    rewards: npt.ArrayLike,
    propensities: npt.ArrayLike,
    *,
    n_arms: int,
    alpha: float = 0.05,
    method: CSMethod = "empirical_bernstein",
    reward_range: tuple[float, float] = (0.0, 1.0),
    planned_n: int | None = None,
    min_rounds: int = ASYMPTOTIC_MIN_ROUNDS,
    simultaneous: bool = True,
) -> ArmValues:
    """IPS value of every arm with its fixed-n CI and its anytime-valid CS at the log's end.

    Arm a's IPS terms are 1{a_i = a} r_i / p_i: unbiased for arm a's mean reward even when the
    allocation moved with past data, where the naive per-arm mean is biased. The CI is the
    normal approximation at alpha (or alpha / K); it is not valid under repeated looks, the CS is.
    Arms without pulls, or whose terms do not vary, are reported as ArmValues describes.
    """
    if isinstance(n_arms, bool) or not isinstance(n_arms, int | np.integer) or n_arms < 1:
        raise StatsInputError(f"n_arms must be a positive integer, got {n_arms!r}")
    _require_alpha(alpha)
    action = _actions(actions, n_arms)
    reward = _vector("rewards", rewards)
    propensity = _vector("propensities", propensities)
    level = alpha / n_arms if simultaneous else alpha
    _require_interval_data(action.size, level)
    pulls = np.bincount(action, minlength=n_arms).astype(np.int64)
    estimates: list[float | None] = []
    unavailable = (math.inf, -math.inf, math.inf, -math.inf, math.inf, 0.0)
    rows = np.array([unavailable] * n_arms).T  # std_error, ci, cs, ess; overwritten if pulled
    for arm in range(n_arms):
        chosen = (action == arm).astype(np.float64)
        log = LoggedFeedback(reward=reward, propensity=propensity, target_probability=chosen)
        cs = ips_confidence_sequence(
            log,
            alpha=level,
            method=method,
            reward_range=reward_range,
            planned_n=planned_n,
            min_rounds=min_rounds,
        )
        if pulls[arm] == 0:
            estimates.append(None)
            continue
        ips = InversePropensityScore()
        estimates.append(ips.estimate_policy_value(log))
        rows[3:, arm] = (cs.cs_low[-1], cs.cs_high[-1], effective_sample_size(chosen / propensity))
        if _varies(ips.round_values(log)):
            fixed = ips.estimate_interval(log, alpha=level)
            rows[:3, arm] = (fixed.std_error, fixed.ci_low, fixed.ci_high)
    pulls.flags.writeable = False
    std_error, ci_low, ci_high, cs_low, cs_high, ess = (_read_only(r) for r in rows)
    return ArmValues(
        method=method,
        alpha=alpha,
        simultaneous=simultaneous,
        pulls=pulls,
        estimate=tuple(estimates),
        std_error=std_error,
        ci_low=ci_low,
        ci_high=ci_high,
        cs_low=cs_low,
        cs_high=cs_high,
        effective_sample_size=ess,
    )


def _eb_lower_bound(x: FloatArray, alpha: float, planned_n: int | None) -> FloatArray:
    """One-sided empirical-Bernstein lower confidence sequence for the mean of x_i >= 0.

    For xi = x - mhat with mhat in [0, 1], xi >= -1, and Fan et al. (2015)'s inequality
    exp(lambda xi - psi(lambda) xi^2) <= 1 + lambda xi, psi(l) = -log(1 - l) - l, makes
    prod_i exp(lambda_i (x_i - m) - psi(lambda_i) (x_i - mhat_{i-1})^2) a nonnegative
    supermartingale at the true mean m for any predictable lambda_i in [0, 1), mhat_{i-1} in
    [0, 1]. Ville's inequality then gives, for all t at once with probability >= 1 - alpha,
    m >= (sum lambda_i x_i - log(1/alpha) - sum psi(lambda_i) (x_i - mhat_{i-1})^2) / sum lambda_i.
    Bets and centres are the predictable plug-ins of Waudby-Smith & Ramdas (2023, PrPl-EB):
    mhat_t = (1/2 + sum x) / (t + 1), sigma2_t = (1/4 + sum (x - mhat)^2) / (t + 1),
    lambda_t = min(sqrt(2 log(1/alpha) / (sigma2_{t-1} t log(1 + t))), 1/2). With a planned
    horizon N, t log(1 + t) becomes N, making the bound tightest near t = N; the argument holds
    for any predictable lambda, so validity at every t is kept.
    """
    t = np.arange(1, x.size + 1, dtype=np.float64)
    mean_after = (0.5 + np.cumsum(x)) / (t + 1.0)
    mean_before = np.minimum(np.concatenate([[0.5], mean_after[:-1]]), 1.0)
    var_after = (0.25 + np.cumsum((x - mean_after) ** 2)) / (t + 1.0)
    var_before = np.concatenate([[0.25], var_after[:-1]])
    log_inverse_alpha = math.log(1.0 / alpha)
    horizon = t * np.log1p(t) if planned_n is None else float(planned_n)
    bets = np.minimum(np.sqrt(2.0 * log_inverse_alpha / (var_before * horizon)), BET_CAP)
    penalty = (-np.log1p(-bets) - bets) * (x - mean_before) ** 2
    bound: FloatArray = (np.cumsum(bets * x) - log_inverse_alpha - np.cumsum(penalty)) / np.cumsum(
        bets
    )
    return bound


def _asymptotic_half_width(terms: FloatArray, alpha: float, planned_n: int) -> FloatArray:
    """Half-width of the Gaussian-mixture asymptotic CS (Waudby-Smith et al. 2024).

    The running standard deviation of the terms times sequential.py's unit-variance boundary
    `asymptotic_cs_margin`, with rho^2 from `asymptotic_cs_rho_squared(planned_n, alpha,
    "approximate")`: the closed form rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / planned_n
    (the paper's v7 eq. 161, gbstats' choice). That is one fixed-point step towards the exact
    width minimiser at t = planned_n (rule "exact"), not the minimiser itself. It is kept so
    results do not change; its width at planned_n exceeds the minimum by 0.003% at alpha = 0.05
    (0.02% at alpha = 0.2).
    """
    t = np.arange(1, terms.size + 1, dtype=np.float64)
    # Running variance around a fixed shift (the overall mean) to limit cancellation.
    centred = terms - terms.mean()
    mean = np.cumsum(centred) / t
    second_moment = np.cumsum(centred**2) / t
    variance = np.maximum(second_moment - mean**2, 0.0)
    rho2 = asymptotic_cs_rho_squared(planned_n, alpha, "approximate")
    half_width: FloatArray = np.sqrt(variance) * asymptotic_cs_margin(t, rho2, alpha)
    # All terms so far equal (up to rounding): no variance estimate yet, so no bound either.
    half_width[variance <= 1e-12 * second_moment] = np.inf
    return half_width


def _estimate(
    name: str, value: float, std_error: float, alpha: float, log: LoggedFeedback, w: FloatArray
) -> PolicyValueEstimate:
    z = float(special.ndtri(1.0 - alpha / 2.0))
    return PolicyValueEstimate(
        estimator=name,
        estimate=value,
        std_error=std_error,
        ci_low=value - z * std_error,
        ci_high=value + z * std_error,
        alpha=alpha,
        n=log.n,
        effective_sample_size=effective_sample_size(w),
    )


def _normaliser(log: LoggedFeedback) -> FloatArray:
    w = log.importance_weights()
    if not w.sum() > 0.0:
        raise StatsInputError(
            "SNIPS is undefined (0/0): the target policy gives probability 0 to every logged "
            "action (effective sample size 0), so the log says nothing about it; log rounds "
            "where the target policy's action is served"
        )
    return w


def _require_overlap(estimator: str, log: LoggedFeedback) -> None:
    if not np.any(log.importance_weights() > 0.0):
        raise StatsInputError(
            f"{estimator} is undefined: the target policy gives probability 0 to every logged "
            f"action (effective sample size 0 of {log.n} rounds), so the log says nothing about "
            "it; log rounds where the target policy's action is served"
        )


def _varies(values: FloatArray) -> bool:
    """True when the values have a spread beyond rounding (so a sample variance means something)."""
    if values.size < 2:
        return False
    return float(np.ptp(values)) > _RELATIVE_SPREAD * float(np.max(np.abs(values)))


def _require_variation(estimator: str, values: FloatArray, log: LoggedFeedback) -> None:
    if not _varies(values):
        ess = effective_sample_size(log.importance_weights())
        raise StatsInputError(
            f"{estimator} interval is undefined: every term it averages equals {values[0]:g} "
            f"(effective sample size {ess:.3g} of {log.n} rounds), so there is no variation to "
            "estimate the sampling error from and a zero-width interval would claim certainty; "
            "log more rounds where the target policy's action is served, or bound the value "
            "from the reward range with ips_confidence_sequence"
        )


def _reward_model(log: LoggedFeedback, estimator: str) -> tuple[FloatArray, FloatArray]:
    if log.reward_model_logged is None or log.reward_model_target is None:
        raise StatsInputError(
            f"{estimator} needs reward-model predictions: pass reward_model_logged and "
            "reward_model_target to LoggedFeedback"
        )
    return log.reward_model_logged, log.reward_model_target


def _actions(actions: npt.ArrayLike, n_arms: int) -> IntArray:
    raw = np.asarray(actions)
    if raw.ndim != 1 or raw.size == 0:
        raise StatsInputError(f"actions must be a non-empty 1-d array, got shape {raw.shape}")
    if not np.issubdtype(raw.dtype, np.integer):
        raise StatsInputError(f"actions must be integer arm indices, got dtype {raw.dtype}")
    bad = np.flatnonzero((raw < 0) | (raw >= n_arms))
    if bad.size:
        raise StatsInputError(
            f"actions must be arm indices in [0, {n_arms}), got {raw[bad[0]]} at row {bad[0]}"
        )
    return raw.astype(np.int64)


def _vector(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1:
        raise StatsInputError(f"{name} must be a 1-d array, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise StatsInputError(f"{name} must be finite, got {array[bad[0]]} at row {bad[0]}")
    return array


def _require_in(
    name: str, values: FloatArray, low: float, high: float, *, open_low: bool = False
) -> None:
    below = values <= low if open_low else values < low
    bad = np.flatnonzero(below | (values > high))
    if bad.size:
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise StatsInputError(
            f"{name} must be in {interval}, got {values[bad[0]]:g} at row {bad[0]} "
            f"({bad.size} row(s) out of range)"
        )


def _require_reward_range(
    reward: FloatArray, reward_range: tuple[float, float]
) -> tuple[float, float]:
    low, high = (float(v) for v in reward_range)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise StatsInputError(f"reward_range must be finite with low < high, got {reward_range}")
    bad = np.flatnonzero((reward < low) | (reward > high))
    if bad.size:
        raise StatsInputError(
            f"reward {reward[bad[0]]:g} at row {bad[0]} is outside reward_range "
            f"[{low:g}, {high:g}]; pass the metric's true bounds, or use method='asymptotic'"
        )
    return low, high


def _require_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise StatsInputError(f"alpha must be in (0, 1), got {alpha!r}")


def _require_interval_data(n: int, alpha: float) -> None:
    _require_alpha(alpha)
    if n < 2:
        raise StatsInputError(f"a confidence interval needs at least 2 logged rounds, got {n}")


def _require_clip(clip: float) -> None:
    if not clip > 0.0:
        raise StatsInputError(
            f"clip (the largest importance weight kept) must be > 0, got {clip!r}"
        )


def _read_only(array: FloatArray) -> FloatArray:
    array.flags.writeable = False
    return array


def compare_policies(
    *,
    reward: npt.ArrayLike,
    propensity: npt.ArrayLike,
    arm: npt.ArrayLike,
    reward_model: npt.ArrayLike,
    targets: Mapping[str, npt.ArrayLike],
    alpha: float = 0.05,
) -> pd.DataFrame:
    """IPS, SNIPS and DR estimates (with (1 - alpha) CIs) of several target policies on one log.

    Args:
        reward, propensity, arm: the logged rounds (arm 0-based).
        reward_model: qhat[i, a], the reward model's estimate for every round and arm (it must
            not have seen round i: cross-fitted or progressive, or DR's interval is optimistic).
        targets: name -> pi[i, a], each target policy's probability of every arm in every round
            (a length-K vector stands for the same allocation in every round).
    Returns:
        One row per (target, estimator): estimate, std_error, ci_low, ci_high,
        effective_sample_size, and `note`, the reason when an estimator cannot answer (no
        overlap, no variation), in which case the numbers are NaN.
    """
    rewards = _vector("reward", reward)
    arms = _actions(arm, np.asarray(reward_model).shape[-1])
    qhat = np.asarray(reward_model, dtype=np.float64)
    if qhat.ndim != 2 or qhat.shape[0] != rewards.size:
        raise StatsInputError(
            f"reward_model must have one row per logged round ({rewards.size}), got {qhat.shape}"
        )
    rounds = np.arange(rewards.size)
    logged_q = qhat[rounds, arms]
    rows: list[dict[str, object]] = []
    for name, target in targets.items():
        pi = np.broadcast_to(np.asarray(target, dtype=np.float64), qhat.shape)
        feedback = LoggedFeedback(
            reward=rewards,
            propensity=np.asarray(propensity, dtype=np.float64),
            target_probability=pi[rounds, arms],
            reward_model_logged=logged_q,
            reward_model_target=(pi * qhat).sum(axis=1),
        )
        for estimator in (InversePropensityScore(), SelfNormalizedIPS(), DoublyRobust()):
            row: dict[str, object] = {"candidate": name, "estimator": estimator.name}
            try:
                result = estimator.estimate_interval(feedback, alpha=alpha)
            except StatsInputError as exc:
                row |= dict.fromkeys(
                    ("estimate", "std_error", "ci_low", "ci_high", "effective_sample_size"),
                    math.nan,
                )
                row["note"] = str(exc)
            else:
                row |= {
                    "estimate": result.estimate,
                    "std_error": result.std_error,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "effective_sample_size": result.effective_sample_size,
                    "note": "",
                }
            rows.append(row)
    return pd.DataFrame(rows)
