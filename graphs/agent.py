"""The agent graph: five nodes, and conditional edges that carry retry and degradation.

```
START → reason ─tools──▶ act ──▶ observe ─continue─▶ reason
          │ ├─answer──────────────────────────────▶ finish → END
          │ ├─repair / retry ─▶ reason (same node, counters in the state)
          │ └─degrade ─▶ fallback ─▶ finish
observe ─degrade (tool failure, iteration limit, deadline)─▶ fallback
observe ─retry (transient failure of an idempotent tool, attempts left)─▶ act
fallback ─downgrade (a model failure, another tier left)─▶ reason
```
Edge functions are pure functions of the state: nodes write a `signal`, edges route on it.
Node names are persisted in checkpoints: renaming one needs a migration note.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypedDict, cast

from langgraph.graph import END, START, StateGraph

from keel.nodes import AgentContext, act, cost_controlled, fallback, finish, observe, reason
from keel.types import AgentState, Signal

__all__ = [
    "AgentState",
    "build_agent_graph",
    "route_after_fallback",
    "route_after_observe",
    "route_after_reason",
]

ReasonRoute = Literal["act", "reason", "finish", "fallback"]
FallbackRoute = Literal["reason", "finish"]
ObserveRoute = Literal["reason", "act", "fallback"]


def route_after_reason(state: AgentState) -> ReasonRoute:
    """tools → act; answer → finish; repair/retry → reason again; anything else → fallback."""
    signal = state.get("signal")
    if signal == "tools":
        return "act"
    if signal == "answer":
        return "finish"
    if signal in ("repair", "retry"):
        return "reason"
    return "fallback"


def route_after_observe(state: AgentState) -> ObserveRoute:
    """continue → reason; retry (transient tool failure) → act; anything else → fallback."""
    signal = state.get("signal")
    if signal == "continue":
        return "reason"
    return "act" if signal == "retry" else "fallback"


def route_after_fallback(state: AgentState) -> FallbackRoute:
    """downgrade (another model tier) → reason; anything else → finish."""
    return "reason" if state.get("signal") == "downgrade" else "finish"


class EdgeInput(TypedDict, total=False):
    """All an edge reads. LangGraph builds an edge's input from the channels its parameter's
    type names: this copies one channel per routing decision instead of the whole state."""

    signal: Signal


def _inline(route: Callable[[AgentState], str]) -> Callable[[EdgeInput], Awaitable[str]]:
    """The edge as a coroutine: LangGraph runs a sync edge function in a worker thread, a
    thread hop per routing decision that costs more CPU than the decision itself."""

    async def edge(state: EdgeInput) -> str:
        return route(cast(AgentState, state))

    edge.__name__ = edge.__qualname__ = route.__name__
    return edge


def build_agent_graph() -> StateGraph[AgentState, AgentContext, AgentState, AgentState]:
    """The uncompiled agent graph; compile it with a checkpointer to run it."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node("reason", cost_controlled(reason))
    graph.add_node("act", act)
    graph.add_node("observe", observe)
    graph.add_node("fallback", fallback)
    graph.add_node("finish", finish)
    graph.add_edge(START, "reason")
    graph.add_conditional_edges(
        "reason",
        _inline(route_after_reason),
        {"act": "act", "reason": "reason", "finish": "finish", "fallback": "fallback"},
    )
    graph.add_edge("act", "observe")
    graph.add_conditional_edges(
        "observe",
        _inline(route_after_observe),
        {"reason": "reason", "act": "act", "fallback": "fallback"},
    )
    graph.add_conditional_edges(
        "fallback", _inline(route_after_fallback), {"reason": "reason", "finish": "finish"}
    )
    graph.add_edge("finish", END)
    return graph
