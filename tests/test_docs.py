"""Docs move with code: the README's configuration table lists every setting."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    text = README.read_text()
    rows = dict(re.findall(r"^\| `(CROUPIER_[A-Z_0-9]+)` \| `?([^|`]*)`? \|", text, re.M))
    expected = {f"CROUPIER_{name.upper()}" for name in Settings.model_fields}
    assert set(rows) == expected
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = rows[f"CROUPIER_{name.upper()}"].strip()
        assert shown == ("unset" if default is None else str(default)), name


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text


def test_openapi_documents_every_route_including_the_hand_parsed_decide_body(
    sqlite_url: str,
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(sqlite_url))) as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    decide = spec["paths"]["/v1/experiments/{key}/decisions"]["post"]
    body = decide["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"unit_id", "context", "decision_id"}
    assert body["required"] == ["unit_id"]
    assert "401" in decide["responses"]
    for path in (
        "/v1/experiments",
        "/v1/outcomes",
        "/v1/outcomes/batch",
        "/v1/keys",
        "/healthz",
        "/readyz",
        "/v1/experiments/{key}/policy-versions",
    ):
        assert path in spec["paths"], path
