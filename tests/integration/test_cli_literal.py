"""The `keel` command prints user and model text as written, never as rich markup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_runner import KeelCli, keel_runner

QUESTION = "say [/b] and [bold]x[/bold] and :smile:"


@pytest.fixture
def keel(tmp_path: Path) -> KeelCli:
    return keel_runner(tmp_path, KEEL_RETRY__INITIAL_S="0", COLUMNS="400")


def test_an_answer_with_markup_is_printed_literally(keel: KeelCli) -> None:
    done = keel("run", "--model", "scripted:echo", "--thread", "t-[b]", QUESTION)
    assert done.returncode == 0, done.stderr
    assert "MarkupError" not in done.stderr
    assert done.stdout.strip() == f"You asked: {QUESTION}"
    assert "thread t-[b]" in done.stderr, "the totals line is literal too"


def test_the_trace_and_history_show_markup_literally(keel: KeelCli) -> None:
    done = keel("run", "--json", "--model", "scripted:echo", "--thread", "t1", QUESTION)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == f"You asked: {QUESTION}"
    trace = keel("trace", "--thread", "t1")
    assert trace.returncode == 0, trace.stderr
    assert "[bold]x[/bold]" in trace.stdout and "[/b]" in trace.stdout
    history = keel("history", "--thread", "t1")
    assert history.returncode == 0, history.stderr
    assert "[bold]x[/bold]" in history.stdout


def test_an_error_with_markup_is_printed_literally(keel: KeelCli) -> None:
    done = keel("history", "--thread", "[/b][bold]nope")
    assert done.returncode == 4, done.stderr
    assert "[/b][bold]nope" in done.stderr and "MarkupError" not in done.stderr
