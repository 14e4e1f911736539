"""`keel trace`: a thread's steps read back from the checkpoints, on every saver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from rich.console import Console

from keel.checkpoints import open_saver
from keel.errors import ModelCallError, ThreadNotFoundError
from keel.graphs import build_agent_graph
from keel.observability.run_trace import load_trace, render_table, trace_to_json
from keel.testing.scripted import ScriptedModel
from tests.cli_runner import KeelCli, keel_runner
from tests.sales_truth import SALES_QUESTION

FIELDS = ("iteration", "node", "thought", "action", "action_input", "observation", "ms")


def add_call(a: int, b: int) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": "calculator", "args": {"expression": f"{a}+{b}"}, "id": "c1"}],
    )


async def test_trace_matches_the_run_and_survives_the_process(
    agent_factory: Any, checkpoint_url: str
) -> None:
    model = ScriptedModel([ModelCallError("503 busy"), add_call(2, 3), "It is 5.", "Again 5."])
    async with agent_factory(model) as agent:
        first = await agent.arun("What is 2+3?", thread_id="t-1")
        second = await agent.arun("And again?", thread_id="t-1")
        steps = await load_trace(agent.graph, "t-1")
        only = await load_trace(agent.graph, "t-1", run_id=second.metadata.run_id)
        with pytest.raises(ThreadNotFoundError):
            await load_trace(agent.graph, "t-1", run_id="no-such-run")
        with pytest.raises(ThreadNotFoundError):
            await load_trace(agent.graph, "no-such-thread")
    assert first.success and second.success

    runs = trace_to_json("t-1", steps)["runs"]
    assert runs == [first.metadata.run_id, second.metadata.run_id]
    mine = [s for s in steps if s.run_id == first.metadata.run_id]
    assert [{k: getattr(s, k) for k in FIELDS} for s in mine] == [
        {k: row[k] for k in FIELDS} for row in first.metadata.trace
    ]
    assert [s.signal for s in mine if s.node == "reason"] == ["retry", "tools", "answer"]
    act = next(s for s in mine if s.node == "act")
    assert act.action == "calculator" and act.observation == "5"
    assert sum(s.tokens for s in mine) == first.metadata.total_tokens
    stamps = [s.at for s in steps]
    assert all(stamps) and stamps == sorted(stamps)

    assert {s.run_id for s in only} == {second.metadata.run_id}

    if checkpoint_url != "memory://":  # a fresh saver, as a later process would open it
        async with open_saver(checkpoint_url) as saver:
            graph = build_agent_graph().compile(checkpointer=saver)
            again = await load_trace(graph, "t-1")
        assert again == steps


async def test_table_shows_each_step(agent_factory: Any) -> None:
    model = ScriptedModel([add_call(20, 22), "It is 42."])
    async with agent_factory(model) as agent:
        result = await agent.arun("What is 20+22?", thread_id="t-table")
        steps = await load_trace(agent.graph, "t-table")
    console = Console(record=True, width=200)
    render_table(steps, console)
    text = console.export_text()
    header = next(line for line in text.splitlines() if "node" in line)
    for column in ("node", "thought", "action", "input", "observation", "ms", "tokens", "cost"):
        assert column in header
    assert "calculator" in text and '{"expression": "20+22"}' in text and "42" in text
    assert f"tokens {result.metadata.total_tokens}" in text


@pytest.fixture
def keel_cli(tmp_path: Path) -> KeelCli:
    return keel_runner(tmp_path, COLUMNS="200")


def test_cli_trace_of_a_finished_run(keel_cli) -> None:  # type: ignore[no-untyped-def]
    done = keel_cli(
        "run", "--json", "--model", "scripted:sales", "--thread", "cli-t", SALES_QUESTION
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    shown = keel_cli("trace", "--thread", "cli-t", "--json")  # a new process, run long gone
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["thread_id"] == "cli-t" and data["runs"] == [result["metadata"]["run_id"]]
    assert [s["node"] for s in data["steps"]] == [s["node"] for s in result["metadata"]["trace"]]
    assert [s["action"] for s in data["steps"] if s["node"] == "act"] == ["sql_query", "calculator"]

    table = keel_cli("trace", "--thread", "cli-t")
    assert table.returncode == 0 and "sql_query" in table.stdout and "calculator" in table.stdout

    missing = keel_cli("trace", "--thread", "nope")
    assert missing.returncode == 4 and "thread_not_found" in missing.stderr
