"""Threads: create, read, update, delete, search, and their checkpointed state."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot

from keel.checkpoints.thread_copy import copy_thread
from keel.server.deps import Caller, Services, Svc, iso, load_thread
from keel.server.encode import interrupt_json, jsonable, snapshot_json
from keel.server.errors import Conflict, Unprocessable
from keel.server.schemas import (
    ID_PATTERN,
    HistoryRequest,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadSearch,
    ThreadUpdate,
)
from keel.server.store import ThreadRecord

__all__ = ["router", "thread_json"]

router = APIRouter(tags=["threads"])
ThreadId = Annotated[str, Path(pattern=ID_PATTERN)]


async def thread_json(svc: Services, thread: ThreadRecord) -> dict[str, Any]:
    snapshot = await svc.agent.graph.aget_state(svc.agent.config(thread.thread_id))
    interrupts = {
        t.id: [interrupt_json(i) for i in t.interrupts] for t in snapshot.tasks if t.interrupts
    }
    return {
        "thread_id": thread.thread_id,
        "created_at": iso(thread.created_at),
        "updated_at": iso(thread.updated_at),
        "metadata": thread.metadata,
        "status": thread.status,
        "values": jsonable(snapshot.values or {}),
        "interrupts": interrupts,
    }


@router.post("/threads")
async def create_thread(body: ThreadCreate, svc: Svc, principal: Caller) -> dict[str, Any]:
    thread_id = body.thread_id or str(uuid.uuid4())
    thread = await svc.store.create_thread(
        thread_id, principal.tenant_id, {**body.metadata, "graph_id": "agent"}
    )
    if thread is None:
        existing = await svc.store.get_thread(thread_id, principal.tenant_id)
        if existing is None or body.if_exists == "raise":
            raise Conflict(f"thread {thread_id} already exists")
        thread = existing
    return await thread_json(svc, thread)


@router.post("/threads/search")
async def search_threads(body: ThreadSearch, svc: Svc, principal: Caller) -> list[dict[str, Any]]:
    found = await svc.store.search_threads(
        principal.tenant_id,
        metadata=body.metadata,
        status=body.status,
        ids=body.ids,
        limit=body.limit,
        offset=body.offset,
    )
    return [await thread_json(svc, t) for t in found]


@router.post("/threads/count")
async def count_threads(body: ThreadCount, svc: Svc, principal: Caller) -> int:
    """How many of the caller's threads match, with the filters of `/threads/search`."""
    return await svc.store.count_threads(
        principal.tenant_id, metadata=body.metadata, status=body.status
    )


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: ThreadId, svc: Svc, principal: Caller) -> dict[str, Any]:
    return await thread_json(svc, await load_thread(svc, thread_id, principal))


@router.patch("/threads/{thread_id}")
async def update_thread(
    thread_id: ThreadId, body: ThreadUpdate, svc: Svc, principal: Caller
) -> dict[str, Any]:
    thread = await load_thread(svc, thread_id, principal)
    await svc.store.update_thread(thread_id, metadata={**thread.metadata, **body.metadata})
    return await thread_json(svc, await load_thread(svc, thread_id, principal))


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: ThreadId, svc: Svc, principal: Caller) -> Response:
    await load_thread(svc, thread_id, principal)
    await svc.runs.delete_thread_data(thread_id)
    await svc.store.delete_thread(thread_id, principal.tenant_id)
    return Response(status_code=204)


@router.post("/threads/{thread_id}/copy")
async def copy(thread_id: ThreadId, svc: Svc, principal: Caller) -> dict[str, Any]:
    """A new thread of the caller's with this one's metadata, status, checkpoints and
    idempotency journal records (so the copy never repeats an effect the source made)."""
    source = await load_thread(svc, thread_id, principal)
    if await svc.store.active_runs(thread_id):
        raise Conflict(f"thread {thread_id} has a run in progress; copy it afterwards")
    saver = svc.agent.graph.checkpointer
    new_id = str(uuid.uuid4())
    created = await svc.store.create_thread(new_id, principal.tenant_id, dict(source.metadata))
    assert created is not None  # a fresh uuid4
    try:
        if source.status != created.status:
            await svc.store.update_thread(new_id, status=source.status)
        if saver is not None and not isinstance(saver, bool):
            # the journal goes last, in one write: a failure leaves no journal rows behind
            await copy_thread(saver, thread_id, new_id, journal=svc.agent.context.journal)
    except Exception:
        await svc.runs.delete_thread_data(new_id)
        await svc.store.delete_thread(new_id, principal.tenant_id)
        raise
    return await thread_json(svc, await load_thread(svc, new_id, principal))


@router.get("/threads/{thread_id}/state")
async def get_state(
    thread_id: ThreadId,
    svc: Svc,
    principal: Caller,
    subgraphs: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    await load_thread(svc, thread_id, principal)
    snapshot = await svc.agent.graph.aget_state(svc.agent.config(thread_id))
    return snapshot_json(snapshot, thread_id)


@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state_at(
    thread_id: ThreadId,
    checkpoint_id: Annotated[str, Path(pattern=ID_PATTERN)],
    svc: Svc,
    principal: Caller,
) -> dict[str, Any]:
    await load_thread(svc, thread_id, principal)
    config = svc.agent.config(thread_id)
    config["configurable"]["checkpoint_id"] = checkpoint_id
    snapshot = await svc.agent.graph.aget_state(config)
    if not snapshot.values and snapshot.config is None:
        raise Unprocessable(f"checkpoint {checkpoint_id} not found on thread {thread_id}")
    return snapshot_json(snapshot, thread_id)


@router.post("/threads/{thread_id}/state")
async def update_state(
    thread_id: ThreadId, body: StateUpdate, svc: Svc, principal: Caller
) -> dict[str, Any]:
    """Write values into the thread's state as if `as_node` had returned them."""
    await load_thread(svc, thread_id, principal)
    if await svc.store.active_runs(thread_id):
        raise Conflict(f"thread {thread_id} has a run in progress; update its state afterwards")
    config = svc.agent.config(thread_id)
    ref = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
    if isinstance(ref, str):
        config["configurable"]["checkpoint_id"] = ref
    try:
        done = await svc.agent.graph.aupdate_state(config, body.values, as_node=body.as_node)
    except (InvalidUpdateError, ValueError, KeyError) as exc:
        raise Unprocessable(f"cannot apply this update: {exc}") from exc
    c = done.get("configurable", {})
    return {
        "checkpoint": {
            "thread_id": thread_id,
            "checkpoint_ns": c.get("checkpoint_ns", ""),
            "checkpoint_id": c.get("checkpoint_id"),
            "checkpoint_map": c.get("checkpoint_map"),
        }
    }


@router.post("/threads/{thread_id}/history")
async def history(
    thread_id: ThreadId, body: HistoryRequest, svc: Svc, principal: Caller
) -> list[dict[str, Any]]:
    await load_thread(svc, thread_id, principal)
    before = None
    if isinstance(body.before, str):
        before = {"configurable": {"checkpoint_id": body.before}}
    elif isinstance(body.before, dict) and isinstance(body.before.get("checkpoint_id"), str):
        before = {"configurable": {"checkpoint_id": body.before["checkpoint_id"]}}
    states: list[StateSnapshot] = []
    async for snapshot in svc.agent.graph.aget_state_history(
        svc.agent.config(thread_id),
        filter=body.metadata,
        before=before,  # type: ignore[arg-type]
        limit=body.limit,
    ):
        states.append(snapshot)
    return [snapshot_json(s, thread_id) for s in states]
