"""The `keel` command, run as a real subprocess the way a user runs it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from keel.tools.sample_db import ensure_sample_db
from tests.cli_runner import KeelCli, keel_runner
from tests.sales_truth import SALES_QUESTION, top_products


@pytest.fixture
def keel(tmp_path: Path) -> KeelCli:
    return keel_runner(tmp_path, KEEL_RETRY__INITIAL_S="0")


def test_run_json_answers_the_sales_question(keel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = keel("run", "--json", "--model", "scripted:sales", SALES_QUESTION)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {"output", "success", "error", "thread_id", "metadata"}
    assert result["success"] is True and result["error"] is None
    meta = result["metadata"]
    assert set(meta) >= {"iterations", "total_tokens", "total_cost", "execution_time", "trace"}
    assert meta["iterations"] == 3 and meta["total_tokens"] > 0
    for step in meta["trace"]:
        assert set(step) >= {
            "iteration",
            "node",
            "thought",
            "action",
            "action_input",
            "observation",
            "ms",
        }
    truth = top_products(ensure_sample_db(tmp_path / "home"), date.today())
    for name, revenue in truth:
        assert f"{name} (${revenue:,.2f})" in result["output"]

    again = keel("resume", "--thread", result["thread_id"], "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["output"] == result["output"]


def test_run_prints_answer_steps_and_totals(keel) -> None:  # type: ignore[no-untyped-def]
    done = keel("run", "--model", "scripted:sales", SALES_QUESTION)
    assert done.returncode == 0, done.stderr
    assert "Their total revenue was $" in done.stdout
    assert "node" in done.stderr and "sql_query" in done.stderr and "calculator" in done.stderr
    assert "iterations 3" in done.stderr and "cost $" in done.stderr


def test_failed_run_exits_nonzero_with_one_line_reason(keel) -> None:  # type: ignore[no-untyped-def]
    done = keel(
        "run",
        "--json",
        "--model",
        "scripted:sales",
        SALES_QUESTION,
        KEEL_LIMITS__MAX_ITERATIONS="1",
    )
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["success"] is False and result["error_code"] == "iteration_limit"
    human = keel(
        "run", "--model", "scripted:sales", SALES_QUESTION, KEEL_LIMITS__MAX_ITERATIONS="1"
    )
    assert human.returncode == 1
    assert "failed: iteration_limit" in human.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("run", "hi"), {"KEEL_LIMITS__MAX_ITERATIONS": "0"}, "KEEL_LIMITS__MAX_ITERATIONS"),
        (("run", "--model", "nonsense", "hi"), {}, "KEEL_MODEL"),
        (("run", "--model", "warp:drive", "hi"), {}, "unknown model provider"),
        (("run", "--model", "scripted:echo", "  "), {}, "usage_invalid: the question is empty"),
        (("run", "hi"), {"KEEL_CHECKPOINT_URL": "mysql://x"}, "KEEL_CHECKPOINT_URL"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(keel, args, env, needle) -> None:  # type: ignore[no-untyped-def]
    done = keel(*args, **env)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_unknown_thread_fails_before_loading_a_model(keel) -> None:  # type: ignore[no-untyped-def]
    """No checkpoint (a wrong id, or a run killed before its first one): exit 4 with what to
    do instead; other threads are untouched and the advised `keel run --thread` works."""
    kept = keel("run", "--json", "--model", "scripted:echo", "--thread", "kept", "hello")
    assert kept.returncode == 0, kept.stderr
    done = keel("resume", "--thread", "does-not-exist", "--model", "warp:drive")
    assert done.returncode == 4, done.stderr
    assert "thread_not_found" in done.stderr and "nothing to resume" in done.stderr
    assert 'keel run --thread does-not-exist "QUESTION"' in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr and "EmptyInputError" not in done.stderr
    assert keel("history", "--thread", "does-not-exist").returncode == 4, "nothing was written"
    again = keel("resume", "--thread", "kept", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["output"] == "You asked: hello"
    asked = keel("run", "--model", "scripted:echo", "--thread", "does-not-exist", "hello")
    assert asked.returncode == 0, asked.stderr
