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
