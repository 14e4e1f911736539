"""The graph's shape is a contract: five nodes, exactly these edges."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.graphs import (
    build_agent_graph,
    route_after_act,
    route_after_fallback,
    route_after_observe,
    route_after_reason,
)
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
