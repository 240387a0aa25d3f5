"""/v1/experiments: create, list, get, update and lifecycle transitions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from app.db import transaction
from app.errors import NotFound, page_cursor
from app.experiments import service
from app.experiments.models import Experiment
from app.experiments.schemas import (
    ConcludeRequest,
    ExperimentCreate,
    ExperimentOut,
    ExperimentUpdate,
    PolicyVersionOut,
    RevisionOut,
    Status,
)
from app.learning import service as learning_service
from app.learning.models import PolicyVersion
from app.runtime import Runtime, RuntimeDep
from app.schemas import ExperimentKey, Page
from app.security import Admin, Read

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="Policy version number")]


def to_out(experiment: Experiment, allocation: dict[str, float] | None = None) -> ExperimentOut:
    return ExperimentOut.model_validate(
        {
            **{
                name: getattr(experiment, name)
                for name in ExperimentOut.model_fields
                if hasattr(experiment, name) and name not in ("policy", "variants")
            },
            "variants": experiment.variants,
            "policy": {**experiment.policy, "update_interval_s": experiment.update_interval_s},
            "allocation": allocation,
        }
    )


def with_allocation(runtime: Runtime, experiment: Experiment) -> ExperimentOut:
    """The allocation being served: the latest version's while running, rolling out or rolled
    back; all to the control while paused, all to the winner (or control) once concluded; none
    before the start."""
    keys = [v.key for v in experiment.variants]
    if experiment.policy_version == 0:
        return to_out(experiment, None)
    if experiment.status not in ("running", "rolling_out", "rolled_back"):
        control = next(v.key for v in experiment.variants if v.is_control)
        served = (
            experiment.winner if experiment.status != "paused" and experiment.winner else control
        )
        return to_out(experiment, {k: float(k == served) for k in keys})
    with runtime.sessions() as session:
        version = learning_service.latest(session=session, experiment_id=experiment.id)
    assert version is not None, "a started experiment has a policy version"
    return to_out(experiment, dict(zip(keys, version.state["probabilities"], strict=True)))


@router.post("", status_code=201, response_model=ExperimentOut, summary="Create an experiment")
def create(body: ExperimentCreate, principal: Admin, runtime: RuntimeDep) -> ExperimentOut:
    """Create a draft. Nothing is served until it is started."""
    with transaction(runtime.sessions) as session:
        experiment = service.create(session=session, data=body, actor=principal.actor)
    return to_out(experiment)


@router.get("", response_model=Page[ExperimentOut], summary="List experiments")
def list_experiments(
    _: Read,
    runtime: RuntimeDep,
    status: Annotated[Status | None, Query(description="Only this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[ExperimentOut]:
    after = page_cursor(cursor)
    with runtime.sessions() as session:
        rows, more = service.list_page(session=session, status=status, limit=limit, cursor=after)
    return Page[ExperimentOut](
        items=[to_out(e) for e in rows], next_cursor=str(more) if more is not None else None
    )


@router.get("/{key}", response_model=ExperimentOut, summary="Get an experiment")
def get(key: ExperimentKey, _: Read, runtime: RuntimeDep) -> ExperimentOut:
    with runtime.sessions() as session:
        experiment = service.get(session=session, key=key)
    return with_allocation(runtime, experiment)


@router.patch("/{key}", response_model=ExperimentOut, summary="Change an experiment")
def update(
    key: ExperimentKey, body: ExperimentUpdate, principal: Admin, runtime: RuntimeDep
) -> ExperimentOut:
    """In draft anything may change. While running or paused only name, description,
    coverage and the policy's settings (not its type); each change is a revision."""
    with transaction(runtime.sessions) as session:
        experiment = service.update(session=session, key=key, data=body, actor=principal.actor)
    runtime.policies.invalidate(key)
    return with_allocation(runtime, experiment)


def _transition(
    runtime: Runtime, key: str, action: str, actor: str, winner: str | None = None
) -> ExperimentOut:
    with transaction(runtime.sessions) as session:
        experiment = service.transition(
            session=session, key=key, action=action, actor=actor, winner=winner
        )
    runtime.policies.invalidate(key)
    return with_allocation(runtime, experiment)


@router.post("/{key}/start", response_model=ExperimentOut, summary="Start serving")
def start(key: ExperimentKey, principal: Admin, runtime: RuntimeDep) -> ExperimentOut:
    """draft -> running. Publishes policy version 1 (uniform, or the A/B weights)."""
    return _transition(runtime, key, "start", principal.actor)


@router.post("/{key}/pause", response_model=ExperimentOut, summary="Pause")
def pause(key: ExperimentKey, principal: Admin, runtime: RuntimeDep) -> ExperimentOut:
    """running -> paused. Decisions then serve the control, non-experimental."""
    return _transition(runtime, key, "pause", principal.actor)


@router.post("/{key}/resume", response_model=ExperimentOut, summary="Resume")
def resume(key: ExperimentKey, principal: Admin, runtime: RuntimeDep) -> ExperimentOut:
    """paused -> running."""
    return _transition(runtime, key, "resume", principal.actor)


@router.post("/{key}/conclude", response_model=ExperimentOut, summary="Conclude with a winner")
def conclude(
    key: ExperimentKey, body: ConcludeRequest, principal: Admin, runtime: RuntimeDep
) -> ExperimentOut:
    """running or paused -> concluded. Every unit gets the winner from now on."""
    return _transition(runtime, key, "conclude", principal.actor, winner=body.winner)


@router.post("/{key}/archive", response_model=ExperimentOut, summary="Archive")
def archive(key: ExperimentKey, principal: Admin, runtime: RuntimeDep) -> ExperimentOut:
    """draft, paused or concluded -> archived (read-only; still serves winner or control)."""
    return _transition(runtime, key, "archive", principal.actor)


@router.get("/{key}/revisions", response_model=list[RevisionOut], summary="Revision log")
def revisions(key: ExperimentKey, _: Read, runtime: RuntimeDep) -> list[RevisionOut]:
    """Every configuration and status change: what, when, which key."""
    with runtime.sessions() as session:
        rows = service.revisions(session=session, key=key)
    return [RevisionOut.model_validate(r) for r in rows]


def _version_out(row: PolicyVersion, keys: list[str]) -> PolicyVersionOut:
    return PolicyVersionOut(
        number=row.number,
        kind=row.kind,
        allocation=dict(zip(keys, row.state["probabilities"], strict=True)),
        details=row.state.get("details", {}),
        stats=row.stats,
        closed_through=row.closed_through,
        decisions_counted=row.decisions_counted,
        learner=row.learner,
        created_at=row.created_at,
        model_bytes=len(row.model) if row.model is not None else None,
    )


@router.get(
    "/{key}/policy-versions", response_model=list[PolicyVersionOut], summary="Policy versions"
)
def policy_versions(key: ExperimentKey, _: Read, runtime: RuntimeDep) -> list[PolicyVersionOut]:
    """Every allocation (and, for contextual policies, model) the learner published, with the
    statistics it came from."""
    with runtime.sessions() as session:
        experiment = service.get(session=session, key=key)
        rows = learning_service.versions(session=session, experiment=experiment)
        keys = [v.key for v in experiment.variants]
        return [_version_out(r, keys) for r in rows]


@router.get(
    "/{key}/policy-versions/{number}",
    response_model=PolicyVersionOut,
    summary="One policy version",
)
def policy_version(
    key: ExperimentKey, number: VersionNumber, _: Read, runtime: RuntimeDep
) -> PolicyVersionOut:
    """A version's allocation, training statistics (contextual: examples, progressive loss,
    IPS value, VW arguments) and the settings it was trained under."""
    with runtime.sessions() as session:
        experiment = service.get(session=session, key=key)
        row = learning_service.version(session=session, experiment=experiment, number=number)
        return _version_out(row, [v.key for v in experiment.variants])


@router.get(
    "/{key}/policy-versions/{number}/model",
    summary="A version's Vowpal Wabbit model",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def policy_model(
    key: ExperimentKey, number: VersionNumber, _: Read, runtime: RuntimeDep
) -> Response:
    """The saved model bytes (`vw -i model.vw`), for contextual versions that have one."""
    with runtime.sessions() as session:
        experiment = service.get(session=session, key=key)
        row = learning_service.version(session=session, experiment=experiment, number=number)
        if row.model is None:
            raise NotFound(f"policy version {number} of {key!r} has no model")
        return Response(
            row.model,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{key}-v{number}.vw"'},
        )


@router.post(
    "/{key}/policy-versions/{number}/rollback",
    response_model=PolicyVersionOut,
    status_code=201,
    summary="Serve an earlier model again",
)
def rollback(
    key: ExperimentKey, number: VersionNumber, principal: Admin, runtime: RuntimeDep
) -> PolicyVersionOut:
    """Contextual experiments: publish a new version serving version `number`'s model (and
    restore the settings it was trained under). The learner resumes from it with decisions
    closed from now on; what was learned since `number` is dropped. A revision records it."""
    with transaction(runtime.sessions) as session:
        row = service.rollback_model(session=session, key=key, number=number, actor=principal.actor)
        out = _version_out(row, [v.key for v in service.get(session=session, key=key).variants])
    runtime.policies.invalidate(key)
    return out
