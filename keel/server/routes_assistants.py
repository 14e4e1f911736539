"""The assistant's graph and schemas, as the compiled agent graph describes them.

`GET /assistants/{id}/graph` is LangGraph's drawable graph (`Graph.to_json()`: nodes and
edges, conditional edges marked); `GET /assistants/{id}/schemas` the JSON Schemas of the
graph's input, output and state. A schema the graph cannot express is `null`, as the
protocol allows: the context schema always is, since a run's context (model, tools, clock,
journal) is built by the server, never sent by a client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query
from pydantic import Field, TypeAdapter

from keel.server.deps import Caller, Svc
from keel.server.errors import COMMON_ERRORS
from keel.server.handles import GRAPH_ID, check_assistant

__all__ = ["router"]

log = structlog.get_logger("keel.server")
router = APIRouter(tags=["assistants"], responses=COMMON_ERRORS)
XRay = Annotated[bool | Annotated[int, Field(ge=0, le=100)], Query()]


def _schema(name: str, make: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """The schema `make` builds, or None when the graph's types cannot be expressed."""
    try:
        return make()
    except Exception as exc:  # pydantic refuses types without a JSON Schema
        log.debug("api.schema_unavailable", schema=name, error=str(exc)[:200])
        return None


@router.get("/assistants/{assistant_id}/graph")
async def get_graph(
    assistant_id: str, svc: Svc, principal: Caller, xray: XRay = False
) -> dict[str, Any]:
    """The agent graph's nodes and edges (`xray`: subgraphs to this depth; Keel has none)."""
    check_assistant(assistant_id)
    drawable = await svc.agent.graph.aget_graph(xray=xray)
    return drawable.to_json()


@router.get("/assistants/{assistant_id}/schemas")
async def get_schemas(assistant_id: str, svc: Svc, principal: Caller) -> dict[str, Any]:
    """JSON Schemas of the graph's input, output, state and context."""
    check_assistant(assistant_id)
    graph = svc.agent.graph
    return {
        "graph_id": GRAPH_ID,
        "input_schema": _schema("input", graph.get_input_jsonschema),
        "output_schema": _schema("output", graph.get_output_jsonschema),
        "state_schema": _schema(
            "state", lambda: TypeAdapter(graph.builder.state_schema).json_schema()
        ),
        "config_schema": None,
        "context_schema": _schema("context", graph.get_context_jsonschema),
    }


@router.get("/assistants/{assistant_id}/subgraphs")
async def get_subgraphs(
    assistant_id: str,
    principal: Caller,
    recurse: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The graph's subgraphs' schemas by namespace: Keel's agent graph has none (`{}`)."""
    check_assistant(assistant_id)
    return {}


@router.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def get_subgraph(
    assistant_id: str,
    namespace: Annotated[str, Path(max_length=256)],
    principal: Caller,
    recurse: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The subgraphs under `namespace`: none."""
    check_assistant(assistant_id)
    return {}
