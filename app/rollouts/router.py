"""/v1/experiments/{key}/rollout: the automatic rollout's state, approval, manual rollback."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field, StringConstraints

from app.db import transaction
from app.experiments import service as experiments
from app.experiments.router import with_allocation
from app.experiments.schemas import ExperimentOut
from app.rollouts import service
from app.rollouts.models import Rollout
from app.runtime import RuntimeDep
from app.schemas import ExperimentKey, RequestModel, ResponseModel, SafeText
from app.security import Admin, Read

router = APIRouter(prefix="/v1/experiments", tags=["rollouts"])


class RolloutOut(ResponseModel):
    id: int
    state: str
    winner: str
    step: int
    step_started_at: datetime
    failures: int
    approved_step: int | None
    pre_rollout_version: int
    reason: str
    evidence: dict[str, Any]
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None


class RolloutStatus(ResponseModel):
    experiment: str
    status: str
    policy: dict[str, Any] | None = Field(description="The experiment's rollout policy.")
    current: RolloutOut | None = Field(description="The rollout in progress, if any.")
    history: list[RolloutOut]


class RollbackRequest(RequestModel):
    reason: Annotated[str, StringConstraints(max_length=500), SafeText] = ""


def _out(row: Rollout) -> RolloutOut:
    return RolloutOut.model_validate(row)


@router.get("/{key}/rollout", response_model=RolloutStatus, summary="Rollout state and history")
def status(key: ExperimentKey, _: Read, runtime: RuntimeDep) -> RolloutStatus:
    """The rollout policy, the rollout in progress (step, failures, the evidence of the last
    transition) and every earlier rollout."""
    with runtime.sessions() as session:
        experiment = experiments.get(session=session, key=key)
        rows = service.history(session=session, key=key)
        return RolloutStatus(
            experiment=key,
            status=experiment.status,
            policy=experiment.rollout,
            current=next((_out(r) for r in reversed(rows) if r.state in service.ACTIVE), None),
            history=[_out(r) for r in rows],
        )


@router.post("/{key}/rollout/approve", response_model=RolloutOut, summary="Approve the next step")
def approve(key: ExperimentKey, principal: Admin, runtime: RuntimeDep) -> RolloutOut:
    """For rollouts with `approval: true`: the step waiting for approval may start (at the
    controller's next pass, if guardrails still hold)."""
    with transaction(runtime.sessions) as session:
        return _out(service.approve(session=session, key=key, actor=principal.actor))


@router.post("/{key}/rollout/rollback", response_model=ExperimentOut, summary="Roll back")
def rollback(
    key: ExperimentKey, principal: Admin, runtime: RuntimeDep, body: RollbackRequest | None = None
) -> ExperimentOut:
    """Serve the pre-rollout allocation again at once; the experiment becomes rolled_back."""
    reason = body.reason if body is not None and body.reason else "manual rollback"
    service.roll_back(sessions=runtime.sessions, key=key, actor=principal.actor, reason=reason)
    runtime.policies.invalidate(key)
    with runtime.sessions() as session:
        experiment = experiments.get(session=session, key=key)
    return with_allocation(runtime, experiment)
