"""`contextual`: a Vowpal Wabbit `--cb_explore_adf` policy, one model per policy version.

Each decision builds a multi-line ADF example (the context as the shared example, one example
per variant with `id=<variant key>` and the variant's own features; app.bandits.vw_format),
asks the model for its pmf, mixes in the exploration floor (apply_floor, as every Croupier
bandit) and draws the arm with the decision's uniform of (salt, decision_id): the logged
probability vector is the floored pmf and the propensity its entry for the served arm, so
every decision replays exactly and the logs stay usable for off-policy evaluation.

Before a model exists the policy explores uniformly. Learning (ContextualLearner) is online
and incremental: cost = -reward, the logged propensity as the label's probability, and VW's
own `--save_resume` model bytes carry the state from one version to the next.

VW workspaces are not thread-safe, so a bound policy keeps a pool of workspaces loaded from
the same model bytes: each prediction takes an idle one (or loads another) and gives it back.
Concurrent decisions never share a workspace and never wait on a lock held through a
prediction.

Exploration algorithms (VW's names and meanings, `docs/contextual.md` has the details):
epsilon (epsilon-greedy), squarecb (SquareCB, Foster & Rakhlin 2020), cover (online cover,
Agarwal et al. 2014), bag (bootstrap Thompson sampling) and softmax (Boltzmann over scores).
"""

from __future__ import annotations

import math
import numbers
import os
import queue
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pylibvw
from vowpalwabbit import Workspace

from app.bandits import vw_format
from app.bandits.allocation import sampled_choice
from app.bandits.base import ArmStats, Choice, JSONValue, PolicyConfigError, PolicyState
from app.bandits.validation import arm_count, finite_number, floor_fits, one_of

FloatArray = npt.NDArray[np.float64]

EXPLORATIONS: Mapping[str, Mapping[str, float | int]] = {
    "epsilon": {"epsilon": 0.05},
    "squarecb": {"gamma_scale": 10.0, "gamma_exponent": 0.5},
    "cover": {"n": 4, "psi": 1.0},
    "bag": {"n": 4, "epsilon": 0.05},
    "softmax": {"lambda": 1.0},
}
"""Each exploration algorithm's parameters and their defaults."""

CB_TYPES = ("mtr", "ips", "dr", "dm")
WILDCARD = "*"
DEFAULT_INTERACTIONS: tuple[tuple[str, ...], ...] = ((WILDCARD, vw_format.ACTION_NAMESPACE),)
"""Every shared namespace crossed with the action's: what lets the best action depend on the
context (without an interaction, shared features shift all actions' scores alike)."""
MAX_INTERACTIONS = 20


def _in_unit_interval(name: str, value: object) -> float:
    result = finite_number(name, value)
    if not 0.0 < result <= 1.0:
        raise PolicyConfigError(name, f"{name} must be in (0, 1], got {value!r}")
    return result


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PolicyConfigError(name, f"{name} must be a whole number, got {value!r}")
    if not low <= int(value) <= high:
        raise PolicyConfigError(name, f"{name} must be in [{low}, {high}], got {value!r}")
    return int(value)


def _bounded(name: str, value: object, low: float, high: float, *, open_low: bool) -> float:
    result = finite_number(name, value)
    if (result <= low if open_low else result < low) or result > high:
        bracket = "(" if open_low else "["
        raise PolicyConfigError(
            name, f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}"
        )
    return result


_CHECKS: Mapping[str, Any] = {
    "epsilon": _in_unit_interval,
    "gamma_scale": lambda n, v: _bounded(n, v, 0.0, 1e6, open_low=True),
    "gamma_exponent": lambda n, v: _bounded(n, v, 0.0, 2.0, open_low=False),
    "n": lambda n, v: _whole(n, v, 1, 32),
    "psi": lambda n, v: _bounded(n, v, 0.0, 1e3, open_low=False),
    "lambda": lambda n, v: _bounded(n, v, 0.0, 1e4, open_low=True),
}


def check_exploration(value: object) -> dict[str, float | int | str]:
    """`{"algorithm": name, **parameters}` with every parameter present and valid."""
    if isinstance(value, str):
        value = {"algorithm": value}
    if not isinstance(value, Mapping):
        raise PolicyConfigError(
            "exploration",
            f"exploration must be an object like {{'algorithm': 'squarecb'}}, got {value!r}",
        )
    algorithm = one_of("exploration.algorithm", value.get("algorithm", "epsilon"), EXPLORATIONS)
    defaults = EXPLORATIONS[algorithm]
    result: dict[str, float | int | str] = {"algorithm": algorithm}
    for name, given in value.items():
        if name == "algorithm":
            continue
        if name not in defaults:
            accepted = ", ".join(defaults)
            raise PolicyConfigError(
                f"exploration.{name}",
                f"{name} is not a parameter of exploration {algorithm!r} (it accepts: {accepted})",
            )
        result[name] = _CHECKS[name](f"exploration.{name}", given)
    for name, default in defaults.items():
        result.setdefault(name, default)
    return result


def check_interactions(value: object) -> tuple[tuple[str, ...], ...]:
    """A list of 2- or 3-namespace interactions; `*` stands for every namespace."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise PolicyConfigError(
            "interactions", f"interactions must be a list like [['*', 'action']], got {value!r}"
        )
    if len(value) > MAX_INTERACTIONS:
        raise PolicyConfigError(
            "interactions", f"at most {MAX_INTERACTIONS} interactions, got {len(value)}"
        )
    result = []
    for i, item in enumerate(value):
        where = f"interactions[{i}]"
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str | bytes)
            or not 2 <= len(item) <= 3
            or not all(isinstance(n, str) and n for n in item)
        ):
            raise PolicyConfigError(
                where, f"an interaction is a list of 2 or 3 namespace names (or '*'), got {item!r}"
            )
        result.append(tuple(item))
    return tuple(result)


def _interaction_arg(names: Sequence[str]) -> str:
    # VW indexes a namespace by its first character; ':' is its wildcard.
    return "".join(":" if n == WILDCARD else vw_format.encode(n)[0] for n in names)


def _load(model: bytes, extra: Sequence[str] = ()) -> Workspace:
    """A workspace restored from saved model bytes (its options come from the model)."""
    handle, path = tempfile.mkstemp(suffix=".vw")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(model)
        return Workspace(arg_list=["--quiet", "-i", path, *extra])
    finally:
        os.unlink(path)


def _save(workspace: Workspace) -> bytes:
    handle, path = tempfile.mkstemp(suffix=".vw")
    os.close(handle)
    try:
        workspace.save(path)
        with open(path, "rb") as model:
            return model.read()
    finally:
        os.unlink(path)


def run_multi(workspace: Workspace, lines: Sequence[str], *, learn: bool) -> list[float]:
    """Parse one multi-line example, predict (or learn, which predicts first), and return the
    prediction: the pmf under `--cb_explore_adf`, the per-action scores under `--cb_adf`.

    Goes through pylibvw (VW's C++ binding, which pyvw's Workspace extends) without wrapping
    every line in a pyvw Example: a third of the cost of the public path, and the same
    computation (tests/bandits/test_contextual.py checks predictions and models against
    Workspace.parse/learn/predict, so a vowpalwabbit upgrade that changes this fails there).
    """
    examples = workspace._parse("\n".join(lines))
    try:
        if learn:
            pylibvw.vw.learn_multi(workspace, examples)
        else:
            pylibvw.vw.predict_multi(workspace, examples)
        scores: list[float] = examples[0].get_action_scores()
        return scores
    finally:
        pylibvw.vw._finish_example_multi_ex(workspace, examples)


class WorkspacePool:
    """Idle workspaces of one model; each caller gets one of its own (see module docstring)."""

    def __init__(self, model: bytes) -> None:
        self._model = model
        self._idle: queue.SimpleQueue[Workspace] = queue.SimpleQueue()
        self._idle.put(_load(model))  # loaded now, so the first decision does not pay for it

    def predict(self, lines: list[str]) -> list[float]:
        try:
            workspace = self._idle.get_nowait()
        except queue.Empty:
            workspace = _load(self._model)
        try:
            return run_multi(workspace, lines, learn=False)
        finally:
            self._idle.put(workspace)


@dataclass(frozen=True)
class ContextualPolicy:
    """A `--cb_explore_adf` policy (see the module docstring).

    Args:
        n_arms: number of actions (the experiment's variants).
        exploration: `{"algorithm": one of EXPLORATIONS, **its parameters}`.
        interactions: namespace crosses, e.g. [["*", "action"], ["user", "action"]].
        learning_rate: VW's `-l` (> 0).
        cb_type: how VW estimates costs: mtr (default), ips, dr or dm.
        min_probability: exploration floor on every action (> 0, n_arms * it <= 1).
        bits: hash table size, 2**bits weights (VW's `-b`).
        actions: the variant keys (the `id=` feature of each action).
        action_features: each variant's own features (flat or namespaced), or None.
        model: saved VW model bytes this policy serves; None explores uniformly.
    """

    kind: ClassVar[str] = "contextual"
    n_arms: int
    exploration: Mapping[str, Any] = field(default_factory=lambda: {"algorithm": "epsilon"})
    interactions: Sequence[Sequence[str]] = DEFAULT_INTERACTIONS
    learning_rate: float = 0.5
    cb_type: str = "mtr"
    min_probability: float = 0.005
    bits: int = 18
    actions: Sequence[str] | None = None
    action_features: Sequence[Mapping[str, Any] | None] | None = None
    model: bytes | None = field(default=None, repr=False, compare=False)
    _texts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _pool: WorkspacePool | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        n_arms = arm_count("n_arms", self.n_arms)
        set_(self, "n_arms", n_arms)
        set_(self, "exploration", check_exploration(self.exploration))
        set_(self, "interactions", check_interactions(self.interactions))
        set_(
            self,
            "learning_rate",
            _bounded("learning_rate", self.learning_rate, 0.0, 100.0, open_low=True),
        )
        one_of("cb_type", self.cb_type, CB_TYPES)
        floor = finite_number("min_probability", self.min_probability)
        floor_fits(floor, n_arms)
        set_(self, "min_probability", floor)
        set_(self, "bits", _whole("bits", self.bits, 10, 26))
        actions = (
            tuple(self.actions) if self.actions is not None else tuple(map(str, range(n_arms)))
        )
        if len(actions) != n_arms or len(set(actions)) != n_arms:
            raise PolicyConfigError(
                "actions", f"actions must be {n_arms} distinct keys, got {actions!r}"
            )
        set_(self, "actions", actions)
        extra = (
            tuple(self.action_features) if self.action_features is not None else (None,) * n_arms
        )
        if len(extra) != n_arms:
            raise PolicyConfigError(
                "action_features", f"action_features needs one entry per action ({n_arms})"
            )
        set_(self, "action_features", extra)
        try:
            spaces = vw_format.action_namespaces(actions, extra)
        except ValueError as exc:
            raise PolicyConfigError("action_features", str(exc)) from None
        set_(self, "_texts", tuple(vw_format.action_texts(spaces)))
        set_(self, "_pool", WorkspacePool(self.model) if self.model is not None else None)

    # --- configuration -------------------------------------------------------------------
    def vw_args(self) -> list[str]:
        """VW's command line for a fresh model of these settings."""
        exploration = dict(self.exploration)
        algorithm = exploration.pop("algorithm")
        args = ["--cb_explore_adf"]
        if algorithm == "epsilon":
            args += ["--epsilon", repr(exploration["epsilon"])]
        elif algorithm == "squarecb":
            args += ["--squarecb", "--gamma_scale", repr(exploration["gamma_scale"])]
            args += ["--gamma_exponent", repr(exploration["gamma_exponent"])]
        elif algorithm == "cover":
            args += ["--cover", str(exploration["n"]), "--psi", repr(exploration["psi"])]
        elif algorithm == "bag":
            args += ["--bag", str(exploration["n"]), "--epsilon", repr(exploration["epsilon"])]
        else:
            args += ["--softmax", "--lambda", repr(exploration["lambda"])]
        args += ["--cb_type", self.cb_type, "-l", repr(self.learning_rate), "-b", str(self.bits)]
        for names in self.interactions:
            args += ["--interactions", _interaction_arg(names)]
        return [*args, "--random_seed", "0", "--save_resume", "--quiet"]

    def fingerprint(self) -> str:
        """What a saved model depends on: a model trained under other settings is retrained."""
        return " ".join([*self.vw_args(), "actions", *self._texts])

    def check_vw(self) -> None:
        """Let VW itself accept the combination (some settings exclude each other)."""
        try:
            Workspace(arg_list=self.vw_args()).finish()
        except Exception as exc:
            where = "cb_type" if "cb_type" in str(exc) else "exploration"
            raise PolicyConfigError(where, f"Vowpal Wabbit refused these settings: {exc}") from None

    def bind(self, model: bytes | None) -> ContextualPolicy:
        """The same settings serving `model` (None: uniform exploration)."""
        return replace(self, model=model)

    # --- the Policy role -----------------------------------------------------------------
    def initial_state(self) -> PolicyState:
        model = {"fingerprint": self.fingerprint(), "examples": 0}
        return PolicyState((1.0 / self.n_arms,) * self.n_arms, {"model": model})

    def update(self, stats: Sequence[ArmStats]) -> PolicyState:
        raise PolicyConfigError(
            "type",
            "a contextual policy learns from contexts (ContextualLearner), not per-arm totals",
        )

    def shared(self, context: Mapping[str, JSONValue] | None) -> vw_format.Namespaces:
        return vw_format.namespaces(context, vw_format.CONTEXT_NAMESPACE)

    def lines(
        self, context: Mapping[str, JSONValue] | None, label: tuple[int, float, float] | None = None
    ) -> list[str]:
        return vw_format.text_lines(self.shared(context), self._texts, label=label)

    def floored(self, pmf: Sequence[float]) -> FloatArray:
        """VW's pmf (float32, summing to 1 within ~1e-7), renormalised and floored."""
        return np.array(self.floored_list(pmf))

    def floored_list(self, pmf: Sequence[float]) -> list[float]:
        """`floored` in plain Python (the decide path: a few microseconds for 10 arms):
        f + (1 - K f) * p_i / sum(p), app.bandits.apply_floor's mixture."""
        total = math.fsum(pmf)
        if len(pmf) != self.n_arms or not (math.isfinite(total) and total > 0.0) or min(pmf) < 0.0:
            raise ValueError(f"Vowpal Wabbit returned an invalid pmf {list(pmf)}")
        floor = self.min_probability
        scale = max(0.0, 1.0 - self.n_arms * floor) / total
        return [floor + scale * p for p in pmf]

    def floored_rows(self, pmfs: npt.ArrayLike) -> FloatArray:
        """`floored` of every row of a (rounds x arms) matrix of raw pmfs at once."""
        raw = np.asarray(pmfs, dtype=np.float64).reshape(-1, self.n_arms)
        total = raw.sum(axis=1, keepdims=True)
        if not (np.all(np.isfinite(raw)) and np.all(raw >= 0.0) and np.all(total > 0.0)):
            raise ValueError("Vowpal Wabbit returned an invalid pmf")
        floor = self.min_probability
        result: FloatArray = floor + max(0.0, 1.0 - self.n_arms * floor) * (raw / total)
        return result

    def probabilities(self, context: Mapping[str, JSONValue] | None) -> FloatArray:
        """The floored pmf this policy serves for `context`."""
        return np.array(self._served(context))

    def _served(self, context: Mapping[str, JSONValue] | None) -> list[float]:
        lines = self.lines(
            context
        )  # also without a model: a context is valid or not from the start
        if self._pool is None:
            return [1.0 / self.n_arms] * self.n_arms
        return self.floored_list(self._pool.predict(lines))

    def choose(
        self,
        state: PolicyState,
        *,
        salt: str,
        unit_id: str,
        decision_id: str,
        context: Mapping[str, JSONValue] | None = None,
    ) -> Choice:
        vector = self._served(context)
        return sampled_choice(vector, n_arms=self.n_arms, salt=salt, decision_id=decision_id)

    def learner(self, model: bytes | None = None) -> ContextualLearner:
        """An online learner resuming `model` (fresh with these settings when None)."""
        return ContextualLearner(self, model)


class ContextualLearner:
    """Online training: one logged decision at a time, progressive validation for free.

    `learn` returns the floored pmf the model gave the example *before* learning from it (VW
    predicts, then updates), so the progressive IPS value of the policy costs nothing extra.
    """

    def __init__(self, policy: ContextualPolicy, model: bytes | None = None) -> None:
        self.policy = policy
        if model is None:
            self._workspace = Workspace(arg_list=policy.vw_args())
        else:
            self._workspace = _load(model)
        self.examples = 0

    def learn(
        self, context: Mapping[str, JSONValue] | None, arm: int, reward: float, propensity: float
    ) -> FloatArray:
        """Learn one logged decision; returns the floored pmf from before the update."""
        return self.policy.floored(self.learn_raw(context, arm, reward, propensity))

    def learn_raw(
        self, context: Mapping[str, JSONValue] | None, arm: int, reward: float, propensity: float
    ) -> list[float]:
        """`learn`, returning VW's raw pmf (floor many at once with `floored_rows`)."""
        if not 0 <= arm < self.policy.n_arms:
            raise ValueError(f"arm {arm} is not one of the {self.policy.n_arms} actions")
        if not (0.0 < propensity <= 1.0 and math.isfinite(reward)):
            raise ValueError(
                f"need a propensity in (0, 1] and a finite reward, got {propensity}, {reward}"
            )
        label = (arm, -reward, propensity)
        pmf = run_multi(self._workspace, self.policy.lines(context, label), learn=True)
        self.examples += 1
        return pmf

    def progressive_loss(self) -> float | None:
        """VW's average progressive-validation loss (IPS cost of its predictions) so far."""
        weight = float(self._workspace.get_weighted_examples())
        return float(self._workspace.get_sum_loss()) / weight if weight > 0 else None

    def model(self) -> bytes:
        return _save(self._workspace)

    def close(self) -> None:
        self._workspace.finish()


class RewardModel:
    """qhat(x, a) for every action, from a `--cb_adf --cb_type mtr` regression trained online on
    the log: `predict_then_learn` gives each round's estimates before it learns from it, so
    every estimate is out of sample (what doubly robust needs, without cross-fitting)."""

    def __init__(self, policy: ContextualPolicy) -> None:
        args = [
            "--cb_adf",
            "--cb_type",
            "mtr",
            "-b",
            str(policy.bits),
            "--quiet",
            "--random_seed",
            "0",
        ]
        for names in policy.interactions:
            args += ["--interactions", _interaction_arg(names)]
        self.policy = policy
        self._workspace = Workspace(arg_list=args)

    def predict_then_learn(
        self, context: Mapping[str, JSONValue] | None, arm: int, reward: float, propensity: float
    ) -> FloatArray:
        # Learning predicts first: the scores are those from before this decision was learned.
        label = (arm, -reward, propensity)
        scores = run_multi(self._workspace, self.policy.lines(context, label), learn=True)
        return -np.asarray(scores, dtype=np.float64)

    def close(self) -> None:
        self._workspace.finish()
