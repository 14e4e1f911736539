"""Assistants, as the Agent Server protocol and the official `langgraph-sdk` use them.

Create (graph id, config, context, metadata, name, description, `if_exists`), get, update
(a new version), delete, search, count, versions, set latest, and each one's graph, schemas
and subgraphs. Every graph has a default assistant (`keel.server.assistants`) that cannot
be changed or deleted; a tenant's own assistants are only its own. An assistant's config and
context are checked against its graph when written: what cannot apply is a 422 naming the
field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field

from keel.server.assistants import Assistant
from keel.server.deps import Caller, Services, Svc
from keel.server.errors import COMMON_ERRORS, Conflict, NotFound, Unprocessable, responses
from keel.server.routes_threads import delete_thread_everything
from keel.server.schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersions,
)
from keel.server.served import Applied, ServedGraph
from keel.server.store import metadata_matches

__all__ = ["router"]

router = APIRouter(tags=["assistants"], responses=COMMON_ERRORS)
XRay = Annotated[bool | Annotated[int, Field(ge=0, le=100)], Query()]
AssistantId = Annotated[str, Path(min_length=1, max_length=128)]


def _served(svc: Services, graph_id: str) -> ServedGraph:
    """The graph `graph_id` names; 422 listing the graphs served."""
    served = svc.graphs.get(graph_id)
    if served is None:
        raise Unprocessable(
            f"graph_id {graph_id!r} is not a graph of this service "
            f"(graphs: {', '.join(svc.graphs.listed)})"
        )
    return served


async def _own(svc: Services, assistant_id: str, tenant_id: str, doing: str) -> Assistant:
    """The caller's own assistant; 409 for a default one, 404 for none."""
    if svc.assistants.default_for(assistant_id) is not None:
        raise Conflict(
            f"assistant {assistant_id} is a graph's default assistant and cannot be {doing}; "
            "create your own with POST /assistants"
        )
    found = await svc.assistants.store.get(assistant_id, tenant_id)
    if found is None:
        raise NotFound(f"assistant {assistant_id} not found")
    return found


@router.post("/assistants", responses=responses(409))
async def create_assistant(body: AssistantCreate, svc: Svc, principal: Caller) -> dict[str, Any]:
    """A new assistant of `graph_id` (version 1)."""
    served = _served(svc, body.graph_id)
    if body.assistant_id is not None:
        default = svc.assistants.default_for(body.assistant_id)
        existing = default or await svc.assistants.store.get(body.assistant_id, principal.tenant_id)
        if existing is not None:
            if body.if_exists == "do_nothing":
                return existing.to_json()
            raise Conflict(f"assistant {body.assistant_id} already exists")
    await served.check(Applied(body.config, body.context))
    made = svc.assistants.new(
        principal.tenant_id,
        body.graph_id,
        assistant_id=body.assistant_id,
        name=body.name,
        description=body.description,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
    )
    if not await svc.assistants.store.create(made):
        mine = await svc.assistants.store.get(made.assistant_id, principal.tenant_id)
        if mine is not None and body.if_exists == "do_nothing":
            return mine.to_json()
        raise Conflict(f"assistant {made.assistant_id} already exists")
    return made.to_json()


def _sorted(found: list[Assistant], sort_by: str | None, order: str | None) -> list[Assistant]:
    key = sort_by or "created_at"
    # a stable sort: defaults (listed first) stay in the project's order among equals
    return sorted(found, key=lambda a: getattr(a, key), reverse=(order or "desc") == "desc")


@router.post("/assistants/search")
async def search_assistants(
    body: AssistantSearch, svc: Svc, principal: Caller, response: Response
) -> list[dict[str, Any]]:
    """The caller's matching assistants (the defaults included), newest first by default;
    `X-Pagination-Next` carries the next page's offset when there is one."""
    found = await svc.assistants.search(
        principal.tenant_id, graph_id=body.graph_id, metadata=body.metadata, name=body.name
    )
    found = _sorted(found, body.sort_by, body.sort_order)
    page = [a.to_json() for a in found[body.offset : body.offset + body.limit]]
    if body.offset + body.limit < len(found):
        response.headers["X-Pagination-Next"] = str(body.offset + body.limit)
    if body.select:
        page = [{k: v for k, v in a.items() if k in body.select} for a in page]
    return page


@router.post("/assistants/count")
async def count_assistants(body: AssistantCount, svc: Svc, principal: Caller) -> int:
    """How many assistants `/assistants/search` would find with these filters."""
    found = await svc.assistants.search(
        principal.tenant_id, graph_id=body.graph_id, metadata=body.metadata, name=body.name
    )
    return len(found)


@router.get("/assistants/{assistant_id}")
async def get_assistant(assistant_id: AssistantId, svc: Svc, principal: Caller) -> dict[str, Any]:
    """An assistant by id (or a graph id: that graph's default assistant)."""
    return (await svc.assistants.get(assistant_id, principal.tenant_id)).to_json()


@router.patch("/assistants/{assistant_id}", responses=responses(409))
async def update_assistant(
    assistant_id: AssistantId, body: AssistantPatch, svc: Svc, principal: Caller
) -> dict[str, Any]:
    """A new version: the fields given replace the current version's; `metadata` is merged."""
    current = await _own(svc, assistant_id, principal.tenant_id, "updated")
    given = body.model_dump(exclude_unset=True)
    changes: dict[str, Any] = {
        k: v for k, v in given.items() if k in ("graph_id", "config", "context", "name")
    }
    if "description" in given:
        changes["description"] = body.description
    changes = {
        k: ({} if v is None and k in ("config", "context") else v) for k, v in changes.items()
    }
    if changes.get("graph_id") is None:
        changes.pop("graph_id", None)
    if changes.get("name") is None:
        changes.pop("name", None)
    if body.metadata is not None:
        changes["metadata"] = {**current.metadata, **body.metadata}
    served = _served(svc, changes.get("graph_id", current.graph_id))
    await served.check(
        Applied(changes.get("config", current.config), changes.get("context", current.context))
    )
    return (await svc.assistants.store.new_version(current, changes)).to_json()


@router.delete("/assistants/{assistant_id}", status_code=204, responses=responses(409))
async def delete_assistant(
    assistant_id: AssistantId,
    svc: Svc,
    principal: Caller,
    delete_threads: Annotated[bool, Query()] = False,
) -> Response:
    """Delete the assistant and all its versions (`delete_threads`: and the caller's threads
    whose `metadata.assistant_id` is this assistant, with their runs and checkpoints)."""
    await _own(svc, assistant_id, principal.tenant_id, "deleted")
    if delete_threads:
        threads = await svc.store.search_threads(
            principal.tenant_id, metadata={"assistant_id": assistant_id}, limit=1_000_000
        )
        for thread in threads:
            await delete_thread_everything(svc, thread)
    await svc.assistants.store.delete(assistant_id, principal.tenant_id)
    return Response(status_code=204)


@router.post("/assistants/{assistant_id}/versions")
async def list_versions(
    assistant_id: AssistantId, body: AssistantVersions, svc: Svc, principal: Caller
) -> list[dict[str, Any]]:
    """Every version of the assistant, newest first."""
    found = await svc.assistants.get(assistant_id, principal.tenant_id)
    versions = (
        [found]
        if found.system
        else await svc.assistants.store.versions(found.assistant_id, principal.tenant_id)
    )
    if body.metadata:
        versions = [v for v in versions if metadata_matches(v.metadata, body.metadata)]
    page = versions[body.offset : body.offset + body.limit]
    return [v.to_json(version_only=True) for v in page]


@router.post("/assistants/{assistant_id}/latest", responses=responses(409))
async def set_latest(
    assistant_id: AssistantId, body: AssistantLatest, svc: Svc, principal: Caller
) -> dict[str, Any]:
    """Make an earlier (or later) version the assistant's current one."""
    found = await svc.assistants.get(assistant_id, principal.tenant_id)
    if found.system:
        if body.version == found.version:
            return found.to_json()
        raise NotFound(f"assistant {assistant_id} has no version {body.version}")
    made = await svc.assistants.store.set_latest(found, body.version)
    if made is None:
        raise NotFound(f"assistant {assistant_id} has no version {body.version}")
    return made.to_json()


async def _graph_of(svc: Services, assistant_id: str, tenant_id: str) -> ServedGraph:
    assistant = await svc.assistants.get(assistant_id, tenant_id)
    return _served(svc, assistant.graph_id)


@router.get("/assistants/{assistant_id}/graph")
async def get_graph(
    assistant_id: AssistantId, svc: Svc, principal: Caller, xray: XRay = False
) -> dict[str, Any]:
    """The assistant's graph's nodes and edges (`xray`: subgraphs to this depth)."""
    return await (await _graph_of(svc, assistant_id, principal.tenant_id)).drawable(xray)


@router.get("/assistants/{assistant_id}/schemas")
async def get_schemas(assistant_id: AssistantId, svc: Svc, principal: Caller) -> dict[str, Any]:
    """JSON Schemas of the graph's input, output, state and context (`null`: not
    expressible; a Keel agent's context is built by the server)."""
    return await (await _graph_of(svc, assistant_id, principal.tenant_id)).schemas()


@router.get("/assistants/{assistant_id}/subgraphs")
async def get_subgraphs(
    assistant_id: AssistantId,
    svc: Svc,
    principal: Caller,
    recurse: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The schemas of the graph's subgraphs, by namespace."""
    served = await _graph_of(svc, assistant_id, principal.tenant_id)
    return await served.subgraphs(None, recurse)


@router.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def get_subgraph(
    assistant_id: AssistantId,
    namespace: Annotated[str, Path(max_length=256)],
    svc: Svc,
    principal: Caller,
    recurse: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The subgraphs under `namespace`."""
    served = await _graph_of(svc, assistant_id, principal.tenant_id)
    return await served.subgraphs(namespace, recurse)
