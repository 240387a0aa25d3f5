"""API keys: 401 without a valid key, 403 with the wrong scope, revoked keys stop working."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, experiment_body


def make_key(client: TestClient, *scopes: str) -> dict[str, Any]:
    response = client.post("/v1/keys", json={"name": "k", "scopes": list(scopes)}, headers=ADMIN)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer crp_nope_nope"},
        {"Authorization": "Basic abc"},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer "},
    ],
)
def test_missing_or_invalid_key_is_401_problem(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/v1/experiments", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_scopes_are_enforced(client: TestClient) -> None:
    decide_key = make_key(client, "decide")["key"]
    read_key = make_key(client, "read")["key"]
    assert (
        client.post(
            "/v1/experiments", json=experiment_body(), headers=bearer(decide_key)
        ).status_code
        == 403
    )
    assert (
        client.post("/v1/experiments", json=experiment_body(), headers=bearer(read_key)).status_code
        == 403
    )
    assert client.get("/v1/experiments", headers=bearer(read_key)).status_code == 200
    assert client.get("/v1/experiments", headers=bearer(decide_key)).status_code == 403
    client.post("/v1/experiments", json=experiment_body(), headers=ADMIN)
    client.post("/v1/experiments/exp/start", headers=ADMIN)
    decide = client.post(
        "/v1/experiments/exp/decisions", json={"unit_id": "u"}, headers=bearer(decide_key)
    )
    assert decide.status_code == 200
    assert (
        client.post(
            "/v1/experiments/exp/decisions", json={"unit_id": "u"}, headers=bearer(read_key)
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/v1/outcomes", json={"decision_id": "x", "value": 1}, headers={"X-API-Key": decide_key}
        ).status_code
        == 200
    )
    forbidden = client.get("/v1/keys", headers=bearer(read_key))
    assert forbidden.status_code == 403
    assert "'admin'" in forbidden.json()["detail"]


def test_stored_admin_key_works_and_revoked_key_is_401(client: TestClient) -> None:
    created = make_key(client, "admin")
    assert created["key"].startswith(f"crp_{created['prefix']}_")
    assert client.get("/v1/keys", headers=bearer(created["key"])).status_code == 200
    listed = client.get("/v1/keys", headers=ADMIN).json()
    assert all("key" not in k for k in listed)  # secrets are never listed
    revoked = client.post(f"/v1/keys/{created['prefix']}/revoke", headers=ADMIN)
    assert revoked.json()["revoked"] is True
    assert client.get("/v1/keys", headers=bearer(created["key"])).status_code == 401


def test_a_wrong_secret_with_a_real_prefix_is_401(client: TestClient) -> None:
    created = make_key(client, "read")
    forged = f"crp_{created['prefix']}_{'x' * 43}"
    assert client.get("/v1/experiments", headers=bearer(forged)).status_code == 401
