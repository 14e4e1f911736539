"""`keel eval` after `make run` alone (no dev extra) stops with one clear line, not a traceback."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from keel.cli import app


def test_eval_without_the_dev_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain", None)  # find_spec → None, as if not installed
    result = CliRunner().invoke(app, ["eval", "--tasks", "1"])
    assert result.exit_code == 2
    assert "langchain missing" in result.output and "make install-dev" in result.output
    assert "Traceback" not in result.output
