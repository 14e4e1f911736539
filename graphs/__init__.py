"""Agent graphs: wiring of nodes and conditional edges (no I/O, no settings reads)."""

from keel.graphs.agent import (
    AgentState,
    build_agent_graph,
    route_after_act,
    route_after_fallback,
    route_after_observe,
    route_after_reason,
)

__all__ = [
    "AgentState",
    "build_agent_graph",
    "route_after_act",
    "route_after_fallback",
    "route_after_observe",
    "route_after_reason",
]
