"""Counterfactual evaluation of contextual policies on an experiment's log, and promotion.

`evaluate` reads the most recent closed decisions (their reward is final) and estimates, with
app.bandits.counterfactual, what each candidate would have earned on them, next to the logged
policy, uniform random and every fixed variant. A candidate is contextual settings merged over
the experiment's current ones (or over the defaults, for a non-contextual experiment, whose
logs serve just as well: every decision's propensity is logged). The experiment's current
settings are always evaluated too, as `current`.

`promote` makes a candidate's settings the experiment's (a revision, like a PATCH) and trains
its model on every closed decision at once, so the next version serves it.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.bandits import ContextualPolicy
from app.bandits.counterfactual import ContextualLog
from app.bandits.counterfactual import evaluate as evaluate_log
from app.db import transaction, utcnow
from app.decisions.models import Decision
from app.errors import Conflict, Invalid
from app.evaluation.schemas import EstimateRow, EvaluationOut
from app.experiments import service as experiments
from app.experiments.models import Experiment
from app.experiments.policy import policy_for
from app.experiments.schemas import ExperimentUpdate, PolicySpec
from app.learning import service as learning
from app.learning.runner import learn_one

NOT_SETTINGS = ("type", "update_interval_s")


def _settings(experiment: Experiment, candidate: dict[str, Any]) -> dict[str, Any]:
    base = experiment.policy if experiment.policy["type"] == "contextual" else {}
    merged = {k: v for k, v in {**base, **candidate}.items() if k not in NOT_SETTINGS}
    return {"type": "contextual", **merged}


def _policy(experiment: Experiment, settings: dict[str, Any], where: str) -> ContextualPolicy:
    policy = policy_for(policy=settings, variants=experiment.variants, field_prefix=where)
    assert isinstance(policy, ContextualPolicy)
    return policy


def _log(
    session: Session, experiment: Experiment, limit: int, safety_lag_s: float
) -> tuple[ContextualLog, list[Any]]:
    through = utcnow() - timedelta(seconds=experiment.reward_window_s + safety_lag_s)
    query = (
        select(
            Decision.context,
            Decision.arm,
            Decision.propensity,
            learning.metric_value(
                experiment, experiment.primary_metric, missing=experiment.default_reward
            ),
            Decision.decided_at,
        )
        .where(*learning.learning_window(experiment, after=None, through=through))
        .order_by(Decision.decided_at.desc(), Decision.id.desc())
        .limit(limit)
    )
    rows = list(session.execute(query))[::-1]
    if not rows:
        raise Conflict(
            f"experiment {experiment.key!r} has no closed decisions yet to evaluate on",
            kind="no-data",
        )
    log = ContextualLog(
        contexts=[r[0] for r in rows],
        arms=[int(r[1]) for r in rows],
        propensities=[float(r[2]) for r in rows],
        rewards=[float(r[3]) for r in rows],
    )
    return log, [rows[0][4], rows[-1][4]]


def _number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def evaluate(
    *,
    sessions: sessionmaker[Session],
    key: str,
    candidates: dict[str, dict[str, Any]],
    limit: int,
    alpha: float,
    safety_lag_s: float,
) -> EvaluationOut:
    with sessions() as session:
        experiment = experiments.get(session=session, key=key)
        settings = {"current": _settings(experiment, {})}
        for name, candidate in candidates.items():
            if name == "current":
                raise Invalid("body.candidates.current", "reserved", "'current' is reserved")
            settings[name] = _settings(experiment, candidate)
        policies = {
            name: _policy(experiment, s, f"body.candidates.{name}") for name, s in settings.items()
        }
        log, (first, last) = _log(session, experiment, limit, safety_lag_s)
    table = evaluate_log(log, policies, reference=policies["current"], alpha=alpha)
    estimates = [
        EstimateRow(
            candidate=str(row["candidate"]),
            estimator=str(row["estimator"]),
            estimate=_number(row["estimate"]),
            std_error=_number(row["std_error"]),
            ci_low=_number(row["ci_low"]),
            ci_high=_number(row["ci_high"]),
            effective_sample_size=_number(row["effective_sample_size"]),
            note=str(row["note"]),
        )
        for row in table.to_dict("records")
    ]
    return EvaluationOut(
        experiment=key,
        decisions=log.n,
        first_decided_at=first,
        last_decided_at=last,
        alpha=alpha,
        candidates=settings,
        estimates=estimates,
    )


def promote(
    *,
    sessions: sessionmaker[Session],
    key: str,
    settings: dict[str, Any],
    actor: str,
    safety_lag_s: float,
) -> int:
    """Serve `settings` from now on; returns the policy version serving them."""
    with transaction(sessions) as session:
        experiment = experiments.get(session=session, key=key, for_update=True)
        if experiment.policy["type"] != "contextual":
            raise Conflict(
                f"experiment {key!r} runs policy {experiment.policy['type']!r}; a contextual "
                "candidate can be evaluated on its logs, but a running experiment's policy "
                "type cannot change (start a contextual experiment instead)",
                kind="not-contextual",
            )
        merged = _settings(experiment, settings)
        _policy(experiment, merged, "body.settings")
        spec = PolicySpec.model_validate(merged)
        experiments.update(
            session=session, key=key, data=ExperimentUpdate(policy=spec), actor=actor
        )
    learn_one(sessions, key, utcnow(), safety_lag_s, actor)
    with sessions() as session:
        return experiments.get(session=session, key=key).policy_version


def to_markdown(result: EvaluationOut) -> str:
    lines = [
        f"# Counterfactual evaluation of {result.experiment}",
        "",
        f"{result.decisions} closed decisions, {result.first_decided_at:%Y-%m-%d %H:%M} to "
        f"{result.last_decided_at:%Y-%m-%d %H:%M} UTC; {100 * (1 - result.alpha):g}% intervals.",
        "",
        "| candidate | estimator | estimate | CI | ESS | note |",
        "|---|---|---:|---|---:|---|",
    ]
    for row in result.estimates:
        value = "" if row.estimate is None else f"{row.estimate:.4f}"
        ci = (
            ""
            if row.ci_low is None or row.ci_high is None
            else f"[{row.ci_low:.4f}, {row.ci_high:.4f}]"
        )
        ess = "" if row.effective_sample_size is None else f"{row.effective_sample_size:.0f}"
        lines.append(f"| {row.candidate} | {row.estimator} | {value} | {ci} | {ess} | {row.note} |")
    return "\n".join(lines) + "\n"
