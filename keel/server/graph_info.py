"""What the assistants API tells about a compiled graph: its drawing, schemas and subgraphs.

A schema the graph cannot express is `null`, as the protocol allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from langgraph.pregel import Pregel
from pydantic import TypeAdapter

__all__ = ["draw", "graph_schemas", "graph_subgraphs"]

log = structlog.get_logger("keel.server")


def _schema(name: str, make: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """The schema `make` builds, or None when the graph's types cannot be expressed."""
    try:
        return make()
    except Exception as exc:  # pydantic refuses types without a JSON Schema
        log.debug("api.schema_unavailable", schema=name, error=str(exc)[:200])
        return None


def _state_schema(graph: Pregel) -> dict[str, Any] | None:
    builder = getattr(graph, "builder", None)
    state = getattr(builder, "state_schema", None)
    if state is None:
        return None
    return TypeAdapter(state).json_schema()


def graph_schemas(graph: Pregel, graph_id: str, *, context: bool = True) -> dict[str, Any]:
    """The protocol's `GraphSchema` of `graph` (`context`: False when the server builds it)."""
    return {
        "graph_id": graph_id,
        "input_schema": _schema("input", graph.get_input_jsonschema),
        "output_schema": _schema("output", graph.get_output_jsonschema),
        "state_schema": _schema("state", lambda: _state_schema(graph)),
        "config_schema": None,
        "context_schema": _schema("context", graph.get_context_jsonschema) if context else None,
    }


async def draw(graph: Pregel, xray: int | bool) -> dict[str, Any]:
    drawable = await graph.aget_graph(xray=xray)
    found: dict[str, Any] = drawable.to_json()
    return found


def graph_subgraphs(
    graph: Pregel, graph_id: str, namespace: str | None, recurse: bool
) -> dict[str, Any]:
    """The schemas of `graph`'s subgraphs by namespace (under `namespace` when given)."""
    return {
        ns: graph_schemas(sub, graph_id)
        for ns, sub in graph.get_subgraphs(namespace=namespace, recurse=recurse)
        if isinstance(sub, Pregel)
    }
