"""The configuration reference is generated from the settings' docstrings and kept in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from keel.config import Settings, load_settings
from keel.config_doc import main, render, rows

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_committed_reference_matches_the_settings() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: python -m keel.config_doc --write "
        "docs/configuration.md"
    )


def test_every_setting_has_a_docstring() -> None:
    undocumented = [
        row.name for _, group in rows(Settings, "KEEL_", "__") for row in group if not row.doc
    ]
    assert undocumented == [], f"add a docstring under each of these fields: {undocumented}"


def test_every_documented_variable_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each listed name reaches its field: a nested one through the `__` delimiter."""
    names = [row.name for _, group in rows(Settings, "KEEL_", "__") for row in group]
    assert "KEEL_LIMITS__MAX_ITERATIONS" in names
    assert "KEEL_SERVICE__WEBHOOK_ATTEMPTS" in names
    defaults = Settings()
    for name in names:
        target: object = defaults
        for part in name.removeprefix("KEEL_").lower().split("__"):
            assert hasattr(target, part), f"{name} names no setting"
            target = getattr(target, part)
    monkeypatch.setenv("KEEL_LIMITS__MAX_ITERATIONS", "12")
    assert load_settings().limits.max_iterations == 12


class _Inner(BaseModel):
    """Inner group."""

    depth: int = Field(3, ge=1, le=9)
    """How deep to go."""
    mode: Literal["a", "b"] = "a"
    """Which way."""


class _Demo(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", env_nested_delimiter="__")

    name: str | None = None
    """Who it is for."""
    tags: tuple[str, ...] = ("x",)
    """Labels, a JSON list."""
    inner: _Inner = _Inner()
    """Not shown: the class's own docstring introduces the group."""


def test_render_walks_nested_groups_with_prefix_delimiter_defaults_and_docstrings() -> None:
    text = render(_Demo)
    assert "| `DEMO_NAME` | str (optional) | unset | Who it is for. |" in text
    assert '| `DEMO_TAGS` | JSON list of str | `["x"]` | Labels, a JSON list. |' in text
    assert "## `DEMO_INNER__*`\n\nInner group." in text
    assert "| `DEMO_INNER__DEPTH` | int, ≥ 1, ≤ 9 | `3` | How deep to go. |" in text
    assert "| `DEMO_INNER__MODE` | `a` \\| `b` | `a` | Which way. |" in text


def test_check_fails_on_a_stale_file_and_write_repairs_it(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("Completion tokens per model call.", "old text"))
    assert main(["--check", str(stale)]) == 1
    assert main(["--write", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
