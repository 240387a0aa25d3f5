"""Alerts: one open alert per condition key, the outbox, the API and the open-alerts gauge."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.alerts import service
from app.alerts.metrics import refresh_open_alerts
from app.alerts.models import Alert
from app.db import make_engine, transaction
from app.experiments.models import Experiment
from app.metrics import REGISTRY
from app.webhooks.models import WebhookDelivery
from tests.conftest import ADMIN, count_rows, experiment_body


def sessions_of(api: TestClient) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = api.app.state.runtime.sessions  # type: ignore[attr-defined]
    return factory


def make_experiment(api: TestClient, key: str) -> int:
    response = api.post("/v1/experiments", json=experiment_body(key), headers=ADMIN)
    assert response.status_code == 201, response.text
    with sessions_of(api)() as session:
        return session.execute(select(Experiment.id).where(Experiment.key == key)).scalar_one()


def raise_one(
    sessions: sessionmaker[Session],
    key: str,
    *,
    kind: str = "srm",
    experiment_id: int | None = None,
    severity: str = "warning",
) -> Alert | None:
    with transaction(sessions) as session:
        return service.raise_alert(
            session=session,
            experiment_id=experiment_id,
            kind=kind,
            key=key,
            severity=severity,
            message=f"{kind} on {key}",
            evidence={"p_value": 1e-6, "observed": [510, 490]},
        )


def open_gauge(kind: str) -> float | None:
    return REGISTRY.get_sample_value("croupier_open_alerts", {"kind": kind})


def events(sessions: sessionmaker[Session]) -> list[tuple[str, dict[str, Any]]]:
    with sessions() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        return [(d.event, orjson.loads(d.body)["data"]) for d in rows]


def hook(api: TestClient, events: list[str]) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": events}
    assert api.post("/v1/webhooks", json=body, headers=ADMIN).status_code == 201


def test_one_open_alert_per_key(api: TestClient, sessions: sessionmaker[Session]) -> None:
    first = raise_one(sessions, "srm:exp")
    assert first is not None
    assert raise_one(sessions, "srm:exp") is None  # still open: deduplicated
    assert raise_one(sessions, "srm:other") is not None  # another condition
    with transaction(sessions) as session:
        service.resolve(session=session, alert_id=first.id)
    again = raise_one(sessions, "srm:exp")  # resolved, so the condition may alert again
    assert again is not None
    assert again.id != first.id
    with pytest.raises(ValueError, match="severity"):
        raise_one(sessions, "srm:bad", severity="fatal")


def test_the_webhook_is_queued_in_the_alerts_transaction(
    api: TestClient, sessions: sessionmaker[Session], database_url: str
) -> None:
    hook(api, ["alert.*"])
    with sessions() as session, session.begin():
        alert = service.raise_alert(
            session=session,
            experiment_id=None,
            kind="guardrail",
            key="guardrail:exp:latency",
            severity="critical",
            message="latency up",
            evidence={"lift": 0.2},
        )
        assert alert is not None
        session.rollback()  # the transaction that would have made the alert true fails
    engine = make_engine(database_url)
    assert count_rows(engine, "alerts") == 0
    assert count_rows(engine, "webhook_deliveries") == 0
    stored = raise_one(sessions, "guardrail:exp:latency", kind="guardrail")
    assert stored is not None
    assert count_rows(engine, "alerts") == 1
    [(event, data)] = events(sessions)
    assert event == "alert.raised"
    assert data["id"] == stored.id
    assert data["evidence"] == {"p_value": 1e-6, "observed": [510, 490]}
    assert data["resolved_at"] is None
    engine.dispose()


def test_resolve_sets_resolved_at_and_announces_it_once(
    api: TestClient, sessions: sessionmaker[Session]
) -> None:
    hook(api, ["alert.resolved"])
    alert = raise_one(sessions, "reward_drift:exp", kind="reward_drift")
    assert alert is not None
    response = api.post(f"/v1/alerts/{alert.id}/resolve", headers=ADMIN)
    assert response.status_code == 200, response.text
    resolved = response.json()
    assert resolved["resolved_at"] is not None
    assert resolved["kind"] == "reward_drift"
    again = api.post(f"/v1/alerts/{alert.id}/resolve", headers=ADMIN)
    assert again.status_code == 200
    assert again.json()["resolved_at"] == resolved["resolved_at"]
    [(event, data)] = events(sessions)  # alert.raised was not subscribed; one resolved
    assert event == "alert.resolved"
    assert data["id"] == alert.id
    assert data["resolved_at"] is not None
    missing = api.post("/v1/alerts/999/resolve", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_resolve_key_resolves_the_open_alert_of_a_condition(
    api: TestClient, sessions: sessionmaker[Session]
) -> None:
    alert = raise_one(sessions, "psi_drift:exp:country", kind="psi_drift")
    assert alert is not None
    with transaction(sessions) as session:
        resolved = service.resolve_key(session=session, key="psi_drift:exp:country")
        assert resolved is not None
        assert resolved.id == alert.id
    with transaction(sessions) as session:
        assert service.resolve_key(session=session, key="psi_drift:exp:country") is None


def test_listing_filters_newest_first(api: TestClient, sessions: sessionmaker[Session]) -> None:
    ranker = make_experiment(api, "ranker")
    pricing = make_experiment(api, "pricing")
    a = raise_one(sessions, "srm:ranker", experiment_id=ranker)
    b = raise_one(sessions, "psi_drift:ranker:country", kind="psi_drift", experiment_id=ranker)
    c = raise_one(sessions, "srm:pricing", experiment_id=pricing)
    d = raise_one(sessions, "rollout:global", kind="rollout")
    assert a
    assert b
    assert c
    assert d
    api.post(f"/v1/alerts/{a.id}/resolve", headers=ADMIN)

    def ids(**params: Any) -> list[int]:
        response = api.get("/v1/alerts", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [d.id, c.id, b.id]  # open by default, newest first
    assert ids(state="all") == [d.id, c.id, b.id, a.id]
    assert ids(state="resolved") == [a.id]
    assert ids(experiment="ranker", state="all") == [b.id, a.id]
    assert ids(experiment="ranker") == [b.id]
    assert ids(kind="srm", state="all") == [c.id, a.id]
    assert ids(kind="srm", experiment="pricing") == [c.id]
    page = api.get("/v1/alerts", params={"state": "all", "limit": 3}, headers=ADMIN).json()
    assert [i["id"] for i in page["items"]] == [d.id, c.id, b.id]
    assert ids(state="all", limit=3, cursor=page["next_cursor"]) == [a.id]
    item = api.get(f"/v1/alerts/{b.id}", headers=ADMIN).json()
    assert item["experiment"] == "ranker"
    assert item["experiment_id"] == ranker
    assert item["evidence"] == {"p_value": 1e-6, "observed": [510, 490]}
    assert api.get(f"/v1/alerts/{d.id}", headers=ADMIN).json()["experiment"] is None


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"state": "closed"}, 422, "query.state"),
        ({"limit": 0}, 422, "query.limit"),
        ({"experiment": "no such"}, 422, "query.experiment"),
        ({"cursor": "abc"}, 422, "query.cursor"),
        ({"experiment": "missing"}, 404, None),
    ],
)
def test_bad_listing_queries(
    api: TestClient, params: dict[str, Any], status: int, field: str | None
) -> None:
    response = api.get("/v1/alerts", params=params, headers=ADMIN)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]]


def test_reading_needs_read_and_resolving_needs_admin(
    api: TestClient, sessions: sessionmaker[Session]
) -> None:
    alert = raise_one(sessions, "srm:exp")
    assert alert is not None
    created = api.post("/v1/keys", json={"name": "reader", "scopes": ["read"]}, headers=ADMIN)
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    assert api.get("/v1/alerts", headers=reader).status_code == 200
    assert api.get("/v1/alerts").status_code == 401
    assert api.post(f"/v1/alerts/{alert.id}/resolve", headers=reader).status_code == 403


def test_open_alerts_gauge_follows_commits_only(
    api: TestClient, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        refresh_open_alerts(session)
    raise_one(sessions, "srm:one")
    raise_one(sessions, "srm:two")
    raise_one(sessions, "srm:two")  # deduplicated: still two
    drift = raise_one(sessions, "psi_drift:x", kind="psi_drift")
    assert drift is not None
    assert open_gauge("srm") == 2
    assert open_gauge("psi_drift") == 1
    with sessions() as session, session.begin():  # rolled back: never counted
        service.raise_alert(
            session=session,
            experiment_id=None,
            kind="srm",
            key="srm:three",
            severity="info",
            message="m",
            evidence={},
        )
        session.rollback()
    assert open_gauge("srm") == 2
    api.post(f"/v1/alerts/{drift.id}/resolve", headers=ADMIN)
    assert open_gauge("psi_drift") == 0
    with sessions() as session:
        assert refresh_open_alerts(session) == {"srm": 2}
    assert open_gauge("srm") == 2
