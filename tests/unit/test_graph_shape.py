"""The graph's shape is a contract: five nodes, exactly these edges."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import CONFIG_KEY_READ
from langgraph.channels import LastValue
from langgraph.errors import InvalidUpdateError
from langgraph.pregel._algo import PregelTaskWrites, local_read

from keel.graphs import (
    build_agent_graph,
    route_after_act,
    route_after_fallback,
    route_after_observe,
    route_after_reason,
)
from keel.graphs.agent import edge_readers_are_light, read_signal
from keel.types import AgentState

SNAPSHOT = Path(__file__).parent / "snapshots" / "agent_graph.mmd"


def test_mermaid_matches_snapshot() -> None:
    drawn = build_agent_graph().compile().get_graph().draw_mermaid()
    assert drawn == SNAPSHOT.read_text(), "graph changed: review, then refresh the snapshot"


def test_exactly_five_nodes_and_these_edges() -> None:
    graph = build_agent_graph().compile().get_graph()
    assert set(graph.nodes) == {
        "__start__",
        "reason",
        "act",
        "observe",
        "fallback",
        "finish",
        "__end__",
    }
    edges = {(e.source, e.target, e.conditional) for e in graph.edges}
    assert edges == {
        ("__start__", "reason", False),
        ("reason", "act", True),
        ("reason", "reason", True),
        ("reason", "finish", True),
        ("reason", "fallback", True),
        ("act", "reason", True),
        ("act", "observe", True),
        ("observe", "reason", True),
        ("observe", "act", True),
        ("observe", "fallback", True),
        ("fallback", "finish", True),
        ("fallback", "reason", True),
        ("finish", "__end__", False),
    }


@pytest.mark.parametrize(
    ("signal", "route"),
    [
        ("tools", "act"),
        ("answer", "finish"),
        ("repair", "reason"),
        ("retry", "reason"),
        ("degrade", "fallback"),
        ("continue", "fallback"),
        (None, "fallback"),
    ],
)
def test_route_after_reason(signal: str | None, route: str) -> None:
    assert route_after_reason(AgentState(signal=signal)) == route  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("signal", "route"),
    [("continue", "reason"), ("retry", "observe"), ("degrade", "observe"), ("tools", "observe")],
)
def test_route_after_act(signal: str | None, route: str) -> None:
    assert route_after_act(AgentState(signal=signal)) == route  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("signal", "route"),
    [("continue", "reason"), ("retry", "act"), ("degrade", "fallback"), (None, "fallback")],
)
def test_route_after_observe(signal: str | None, route: str) -> None:
    assert route_after_observe(AgentState(signal=signal)) == route  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("signal", "route"), [("downgrade", "reason"), ("degrade", "finish"), (None, "finish")]
)
def test_route_after_fallback(signal: str | None, route: str) -> None:
    assert route_after_fallback(AgentState(signal=signal)) == route  # type: ignore[typeddict-item]


def test_each_edge_reads_the_signal_alone() -> None:
    # LangGraph's own edge reader copies every channel of the state to read `signal`
    assert edge_readers_are_light(build_agent_graph().compile())


def _config(signal: str | None, writes: list[tuple[str, Any]]) -> RunnableConfig:
    channel = LastValue(str)
    if signal is not None:
        channel.update([signal])
    channels = {"signal": channel, "answer": LastValue(str)}
    task = PregelTaskWrites(("__pregel_pull", "reason"), "reason", writes, ["branch:to:reason"])
    read = functools.partial(local_read, None, channels, {}, task)
    return RunnableConfig(configurable={CONFIG_KEY_READ: read})


@pytest.mark.parametrize(
    ("before", "writes"),
    [
        ("tools", [("messages", []), ("signal", "answer")]),  # the step's own write
        ("repair", [("answer", "x")]),  # no write: the value from before the step
        (None, [("answer", "x")]),  # never written
        (None, [("signal", "tools")]),
    ],
)
def test_the_light_edge_reader_reads_what_langgraphs_reader_reads(
    before: str | None, writes: list[tuple[str, Any]]
) -> None:
    config = _config(before, writes)
    assert read_signal(config) == config["configurable"][CONFIG_KEY_READ](["signal"], True)


def test_two_writes_of_the_signal_fail_as_in_langgraph() -> None:
    config = _config("tools", [("signal", "answer"), ("signal", "tools")])
    with pytest.raises(InvalidUpdateError):
        read_signal(config)
