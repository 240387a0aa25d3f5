"""The rollout controller: evidence from the report, the next step from app.bandits.rollout.

Runs on the leader (the learner's lock), every `CROUPIER_CONTROLLER_INTERVAL_S`. For every
running or rolling-out experiment with an enabled rollout policy it builds the report (the same
statistics an analyst reads: always-valid tests, Holm across guardrails, SRM against the logged
allocation, Bayesian P(best)), turns it into `Evidence`, asks the pure state machine what to do
and applies it in one transaction under the experiment's row lock:

* start / advance: a new policy version serving the step's split (winner share, the rest
  equally on the other arms), served sticky by unit hash; status `rolling_out`;
* await_approval: waits for POST .../rollout/approve;
* failure: a guardrail harmed or SRM; counted, and at `failure_limit` a rollback;
* rollback: a new version serving the pre-rollout allocation again; status `rolled_back`
  (served like running, frozen: no learning, no new rollout until someone resumes it), and a
  critical alert;
* complete: status `concluded` with the winner; with a holdback the experiment stays
  `rolling_out` at the last split (guardrails still watched) until someone concludes it.

Every transition is a revision with the numbers behind it and a webhook event `rollout.<action>`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.alerts.service import raise_alert
from app.bandits.rollout import (
    Evidence,
    RolloutPolicy,
    RolloutState,
    allocation,
    bandit_winner,
    step,
)
from app.db import transaction, utcnow
from app.errors import Conflict
from app.experiments import service as experiments
from app.experiments.models import Experiment
from app.learning import service as learning
from app.rollouts.models import Rollout
from app.webhooks.service import enqueue

log = logging.getLogger("croupier.controller")

ACTIVE = ("ramping", "awaiting_approval", "holding")
WATCHED = ("running", "rolling_out")


def active_rollout(*, session: Session, experiment_id: int) -> Rollout | None:
    return session.scalar(
        select(Rollout)
        .where(Rollout.experiment_id == experiment_id, Rollout.state.in_(ACTIVE))
        .order_by(Rollout.id.desc())
        .limit(1)
    )


def end_active(*, session: Session, experiment: Experiment, state: str, reason: str) -> None:
    """End the experiment's active rollout, if any (a person concluded or rolled back)."""
    row = active_rollout(session=session, experiment_id=experiment.id)
    if row is not None:
        now = utcnow()
        row.state, row.reason, row.updated_at, row.ended_at = state, reason, now, now


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def _state(row: Rollout | None, memo: RolloutState | None) -> RolloutState:
    if row is None:
        return memo or RolloutState()
    phase = "ramping" if row.state not in ACTIVE else row.state
    return RolloutState(
        phase=phase,  # type: ignore[arg-type]
        winner=row.winner,
        step=row.step,
        step_started_at=_seconds(row.step_started_at),
        step_decisions=row.step_decisions,
        failures=row.failures,
        approved_step=row.approved_step,
    )


def evidence_for(
    *, session: Session, experiment: Experiment, policy: RolloutPolicy, now: datetime
) -> Evidence:
    """The report's verdicts as Evidence (the rollout core never sees the report itself)."""
    from app.reports.service import build_report  # heavy (scipy): loaded on first use

    report = build_report(session=session, experiment=experiment, as_of=now)
    primary = report.metrics[0]
    harm = tuple(
        f"{m.metric}: {c.arm}"
        for m in report.metrics
        if m.role == "guardrail"
        for c in m.comparisons
        if c.harm
    )
    winner: str | None = None
    if report.experiment.bandit:
        if primary.bayes:
            winner = bandit_winner(
                [b.arm for b in primary.bayes],
                [b.p_best for b in primary.bayes],
                [b.expected_loss for b in primary.bayes],
                policy,
            )
    elif report.recommendation.action == "ship":
        winner = report.recommendation.arm
    numbers: dict[str, Any] = {
        "as_of": now.isoformat(),
        "decisions": report.decisions,
        "closed_decisions": report.closed_decisions,
        "recommendation": report.recommendation.model_dump(),
        "srm_p_value": report.srm.p_value if report.srm else None,
        "primary": [a.model_dump() for a in primary.arms],
        "comparisons": [c.model_dump() for c in primary.comparisons],
        "guardrails": [
            {"metric": m.metric, "arm": c.arm, "p_adjusted": c.p_adjusted, "harm": c.harm}
            for m in report.metrics
            if m.role == "guardrail"
            for c in m.comparisons
        ],
    }
    if primary.bayes:
        numbers["bayes"] = [b.model_dump() for b in primary.bayes]
    return Evidence(
        closed=sum(a.n for a in primary.arms),
        decisions=report.decisions,
        winner=winner,
        harm=harm,
        srm=bool(report.srm is not None and report.srm.mismatch),
        numbers=numbers,
    )


@dataclass(frozen=True)
class Outcome:
    experiment: str
    action: str
    reason: str


class Controller:
    """One per leader. Keeps each watched experiment's winner candidate in memory (a new
    leader restarts `hold_s`); everything else lives in the database."""

    def __init__(self, sessions: sessionmaker[Session], actor: str) -> None:
        self.sessions = sessions
        self.actor = actor
        self.memo: dict[int, RolloutState] = {}
        self.last_pass: datetime | None = None

    def run_pass(self, now: datetime | None = None) -> list[Outcome]:
        now = now or utcnow()
        with self.sessions() as session:
            rows = session.execute(
                select(Experiment.id, Experiment.key, Experiment.rollout).where(
                    Experiment.status.in_(WATCHED)
                )
            ).all()
        results = []
        for experiment_id, key, doc in rows:
            if not doc or not doc.get("enabled", True):
                self.memo.pop(experiment_id, None)
                continue
            try:
                results.append(self.control(key, now))
            except Exception as exc:  # one experiment must not stop the others
                log.exception("controller: experiment %s failed", key)
                results.append(Outcome(key, "error", str(exc)))
        return results

    def control(self, key: str, now: datetime) -> Outcome:
        with self.sessions() as session:
            experiment = experiments.get(session=session, key=key)
            if experiment.status not in WATCHED or not experiment.rollout:
                return Outcome(key, "none", f"experiment is {experiment.status}")
            policy = RolloutPolicy.from_json(experiment.rollout)
            row = active_rollout(session=session, experiment_id=experiment.id)
            if experiment.status == "running" and row is not None:
                row = None  # stale (ended by a status change); not expected
            state = _state(row, self.memo.get(experiment.id))
            evidence = evidence_for(session=session, experiment=experiment, policy=policy, now=now)
            version = experiment.revision
        decision = step(policy, state, evidence, now=_seconds(now))
        if decision.action == "none":
            if row is None:
                self.memo[experiment.id] = decision.state
            return Outcome(key, "none", decision.reason)
        with transaction(self.sessions) as session:
            experiment = experiments.get(session=session, key=key, for_update=True)
            if experiment.revision != version:  # changed meanwhile: decide again next pass
                return Outcome(key, "none", "the experiment changed during the pass")
            self._apply(
                session,
                experiment,
                policy,
                decision.action,
                decision.state,
                decision.reason,
                evidence,
                now,
            )
        self.memo.pop(experiment.id, None)
        return Outcome(key, decision.action, decision.reason)

    def _apply(
        self,
        session: Session,
        experiment: Experiment,
        policy: RolloutPolicy,
        action: str,
        state: RolloutState,
        reason: str,
        evidence: Evidence,
        now: datetime,
    ) -> None:
        row = active_rollout(session=session, experiment_id=experiment.id)
        arms = [v.key for v in experiment.variants]
        before = experiment.status
        if action == "start":
            row = Rollout(
                experiment_id=experiment.id,
                state="ramping",
                winner=state.winner,
                step=0,
                step_started_at=now,
                step_decisions=state.step_decisions,
                failures=0,
                approved_step=None,
                pre_rollout_version=experiment.policy_version,
                reason=reason,
                evidence=dict(evidence.numbers),
                started_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            experiment.status = "rolling_out"
        assert row is not None, f"{action} needs an active rollout"
        row.state = {
            "rollback": "rolled_back",
            "complete": "completed",
            "hold": "holding",
            "await_approval": "awaiting_approval",
        }.get(action, "ramping" if action in ("start", "advance") else row.state)
        row.step = state.step
        row.step_started_at = datetime.fromtimestamp(state.step_started_at, UTC)
        row.step_decisions = state.step_decisions
        row.failures = state.failures
        row.reason = reason
        row.evidence = dict(evidence.numbers)
        row.updated_at = now
        version: int | None = None
        if action in ("start", "advance"):
            split = allocation(policy, state, arms)
            version = learning.publish_allocation(
                session=session,
                experiment=experiment,
                probabilities=split,
                details={"rollout": {"id": row.id, "step": state.step, "winner": state.winner}},
                learner=self.actor,
            ).number
        elif action == "rollback":
            self._roll_back(session, experiment, row, reason, now)
            version = experiment.policy_version
        elif action == "complete":
            row.ended_at = now
            experiment.status = "concluded"
            experiment.winner = state.winner
            experiment.ended_at = now
        experiment.revision += 1
        changes: dict[str, Any] = {
            "rollout": {
                "id": row.id,
                "state": row.state,
                "winner": row.winner,
                "step": row.step,
                "share": policy.share(row.step) if row.state != "rolled_back" else None,
                "failures": row.failures,
                "reason": reason,
                "policy_version": version,
                "evidence": dict(evidence.numbers),
            }
        }
        if experiment.status != before:
            changes["status"] = {"from": before, "to": experiment.status}
        experiments.revise(
            session=session,
            experiment=experiment,
            action=f"rollout_{action}",
            changes=changes,
            actor=self.actor,
        )
        enqueue(
            session=session,
            event=f"rollout.{action}",
            payload={"experiment": experiment.key, **changes},
        )

    def _roll_back(
        self, session: Session, experiment: Experiment, row: Rollout, reason: str, now: datetime
    ) -> None:
        learning.restore(
            session=session,
            experiment=experiment,
            number=row.pre_rollout_version,
            learner=self.actor,
            details={"rolled_back_rollout": row.id},
        )
        row.state, row.ended_at = "rolled_back", now
        experiment.status = "rolled_back"
        raise_alert(
            session=session,
            experiment_id=experiment.id,
            kind="rollout",
            key=f"rollout:{experiment.key}:{row.id}",
            severity="critical",
            message=f"rollout of {row.winner} in {experiment.key} rolled back: {reason}",
            evidence={"rollout": row.id, "reason": reason, "numbers": row.evidence},
        )


def approve(*, session: Session, key: str, actor: str) -> Rollout:
    """Approve the next step of a rollout waiting for it (the controller advances it)."""
    experiment = experiments.get(session=session, key=key, for_update=True)
    row = active_rollout(session=session, experiment_id=experiment.id)
    if row is None or row.state != "awaiting_approval":
        raise Conflict(
            f"experiment {key!r} has no rollout step waiting for approval", kind="not-awaiting"
        )
    row.approved_step = row.step + 1
    row.updated_at = utcnow()
    experiments.revise(
        session=session,
        experiment=experiment,
        action="rollout_approved",
        changes={"rollout": {"id": row.id, "approved_step": row.approved_step}},
        actor=actor,
    )
    enqueue(
        session=session,
        event="rollout.approved",
        payload={"experiment": key, "rollout": row.id, "approved_step": row.approved_step},
    )
    return row


def roll_back(*, sessions: sessionmaker[Session], key: str, actor: str, reason: str) -> Outcome:
    """A person's rollback: the pre-rollout allocation again, status rolled_back."""
    controller = Controller(sessions, actor)
    now = utcnow()
    with transaction(sessions) as session:
        experiment = experiments.get(session=session, key=key, for_update=True)
        row = active_rollout(session=session, experiment_id=experiment.id)
        if row is None or experiment.status not in ("rolling_out", "paused"):
            raise Conflict(f"experiment {key!r} has no rollout in progress", kind="no-rollout")
        policy = RolloutPolicy.from_json(experiment.rollout or {})
        state = replace(_state(row, None), phase="rolled_back")
        controller._apply(
            session,
            experiment,
            policy,
            "rollback",
            state,
            f"rolled back by {actor}: {reason}",
            Evidence(closed=0, decisions=0, winner=None, numbers={"manual": True}),
            now,
        )
    return Outcome(key, "rollback", reason)


def history(*, session: Session, key: str) -> list[Rollout]:
    experiment = experiments.get(session=session, key=key)
    return list(
        session.scalars(
            select(Rollout).where(Rollout.experiment_id == experiment.id).order_by(Rollout.id)
        )
    )
