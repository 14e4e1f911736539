"""`keel approve`, `keel history`, `keel fork` and `keel checkpoints prune`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import KeelCli, keel_runner
from tests.sales_truth import SALES_QUESTION


@pytest.fixture
def keel(tmp_path: Path) -> KeelCli:
    return keel_runner(
        tmp_path,
        KEEL_RETRY__INITIAL_S="0",
        KEEL_MODEL="scripted:sales",
        KEEL_APPROVAL_TOOLS='["calculator"]',
    )


def test_approve_history_fork_prune(keel: Any) -> None:
    paused = keel("run", "--thread", "t-cli", SALES_QUESTION)
    assert paused.returncode == 3, paused.stderr
    assert "needs approval" in paused.stderr and "calculator(" in paused.stderr
    assert "keel approve --thread t-cli" in paused.stderr

    bad = keel("approve", "--thread", "t-cli", "--edit", '{"expression": 5}')
    assert bad.returncode == 2 and "expression" in bad.stderr

    done = keel("approve", "--thread", "t-cli", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["success"] and "Their total revenue was $" in result["output"]

    listed = keel("history", "--thread", "t-cli", "--json")
    assert listed.returncode == 0, listed.stderr
    history = json.loads(listed.stdout)
    assert history[0]["next"] == [] and history[-1]["source"] == "input"
    first = next(h for h in reversed(history) if h["next"] == ["reason"])

    state = keel("history", "--thread", "t-cli", "--checkpoint", first["checkpoint_id"], "--json")
    assert state.returncode == 0, state.stderr
    values = json.loads(state.stdout)
    assert values["messages"][0]["content"] == SALES_QUESTION and values["answer"] is None

    forked = keel("fork", "--thread", "t-cli", "--checkpoint", first["checkpoint_id"])
    assert forked.returncode == 3, "the branch runs again up to the calculator's approval"
    again = keel("approve", "--thread", "t-cli", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["output"] == result["output"]

    pruned = keel("checkpoints", "prune", "--keep-last", "1", "--json")
    assert pruned.returncode == 0, pruned.stderr
    after = json.loads(keel("history", "--thread", "t-cli", "--json").stdout)
    assert len(after) == 1
    assert json.loads(pruned.stdout)["checkpoints_deleted"] > len(history) - 1, "and the fork's"
    assert keel("checkpoints", "prune").returncode == 2
