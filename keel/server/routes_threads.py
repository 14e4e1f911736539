"""Threads: create, read, update, delete, search, and their checkpointed state."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot

from keel.checkpoints.retention import _keep_last
from keel.checkpoints.thread_copy import copy_thread
from keel.server.crons import CronStore
from keel.server.deps import Caller, Services, Svc, iso, load_thread
from keel.server.encode import interrupt_json, jsonable, snapshot_json
from keel.server.errors import COMMON_ERRORS, Conflict, Unprocessable, responses
from keel.server.schemas import (
    ID_PATTERN,
    MAX_OFFSET,
    HistoryRequest,
    StateAt,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPrune,
    ThreadSearch,
    ThreadUpdate,
)
from keel.server.served import ServedGraph
from keel.server.store import ThreadRecord

__all__ = ["delete_thread_everything", "router", "served_for", "thread_json"]

router = APIRouter(tags=["threads"], responses=COMMON_ERRORS)
ThreadId = Annotated[str, Path(pattern=ID_PATTERN)]


def served_for(svc: Services, thread: ThreadRecord) -> ServedGraph:
    """The graph whose state the thread holds (its `metadata.graph_id`)."""
    return svc.graphs.for_thread(thread.metadata)


async def thread_json(svc: Services, thread: ThreadRecord) -> dict[str, Any]:
    snapshot = await served_for(svc, thread).snapshot(thread.key)
    interrupts = {
        t.id: [interrupt_json(i) for i in t.interrupts] for t in snapshot.tasks if t.interrupts
    }
    return {
        "thread_id": thread.thread_id,
        "created_at": iso(thread.created_at),
        "updated_at": iso(thread.updated_at),
        "metadata": jsonable(thread.metadata),
        "status": thread.status,
        "values": jsonable(snapshot.values or {}),
        "interrupts": interrupts,
    }


@router.post("/threads", responses=responses(409))
async def create_thread(body: ThreadCreate, svc: Svc, principal: Caller) -> dict[str, Any]:
    """A thread of the caller's; 409 when the caller has one of this id (another tenant's
    thread of the same id is another thread: it is neither seen nor touched)."""
    thread_id = body.thread_id or str(uuid.uuid4())
    thread = await svc.store.create_thread(
        thread_id, principal.tenant_id, {"graph_id": svc.graphs.default_id, **body.metadata}
    )
    if thread is None:
        existing = await svc.store.get_thread(thread_id, principal.tenant_id)
        if existing is None or body.if_exists == "raise":
            raise Conflict(f"thread {thread_id} already exists")
        thread = existing
    return await thread_json(svc, thread)


_SORT_KEYS: dict[str, Callable[[ThreadRecord], Any]] = {
    "thread_id": lambda t: t.thread_id,
    "status": lambda t: t.status,
    "created_at": lambda t: t.created_at,
    "updated_at": lambda t: t.updated_at,
    "state_updated_at": lambda t: t.updated_at,
}


@router.post("/threads/search")
async def search_threads(body: ThreadSearch, svc: Svc, principal: Caller) -> list[dict[str, Any]]:
    """The caller's matching threads; newest first unless `sort_by` / `sort_order` say."""
    found = await svc.store.search_threads(
        principal.tenant_id,
        metadata=body.metadata,
        status=body.status,
        ids=body.ids,
        limit=MAX_OFFSET + body.limit,
        offset=0,
    )
    key = _SORT_KEYS[body.sort_by or "created_at"]
    # a stable sort on the store's newest-first order: ties keep the newest first
    found.sort(key=key, reverse=(body.sort_order or "desc") == "desc")
    page = found[body.offset : body.offset + body.limit]
    return [await thread_json(svc, t) for t in page]


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
    await svc.store.update_thread(thread.key, metadata={**thread.metadata, **body.metadata})
    return await thread_json(svc, await load_thread(svc, thread_id, principal))


async def delete_thread_everything(svc: Services, thread: ThreadRecord) -> None:
    """Cancel the thread's runs, then delete its crons, checkpoints, journal rows and record.

    The crons go first: a tick meanwhile finds the thread still there or no cron at all.
    """
    await svc.runs.delete_thread_data(thread.key)
    await CronStore(svc.store.engine).delete_for_thread(thread.thread_id, thread.tenant_id)
    await svc.store.delete_thread(thread.key, thread.tenant_id)


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: ThreadId, svc: Svc, principal: Caller) -> Response:
    await delete_thread_everything(svc, await load_thread(svc, thread_id, principal))
    return Response(status_code=204)


@router.post("/threads/prune", responses=responses(409))
async def prune_threads(body: ThreadPrune, svc: Svc, principal: Caller) -> dict[str, int]:
    """`delete`: delete the threads as `DELETE /threads/{id}` does; `keep_latest`: keep each
    thread and its latest checkpoint, delete its older ones. Ids that are not the caller's
    threads are skipped: `pruned_count` counts the caller's threads pruned."""
    mine = [
        thread
        for thread_id in dict.fromkeys(body.thread_ids)
        if (thread := await svc.store.get_thread(thread_id, principal.tenant_id)) is not None
    ]
    if body.strategy == "keep_latest":
        for thread in mine:  # all checked before any is pruned
            if await svc.store.active_runs(thread.key):
                raise Conflict(
                    f"thread {thread.thread_id} has a run in progress; prune it afterwards"
                )
    for thread in mine:
        if body.strategy == "delete":
            await delete_thread_everything(svc, thread)
        else:
            await _keep_latest(svc, thread.key)
    return {"pruned_count": len(mine)}


async def _keep_latest(svc: Services, key: str) -> None:
    """Delete every checkpoint of the thread but the newest (its current state), as
    `keel checkpoints prune --keep-last 1` does: values kept as deltas are rebuilt into it
    first, so nothing of the current state goes with its ancestors."""
    if svc.graphs.storage is not None:
        # retention's per-thread step (private there): the same rules as `checkpoints prune`
        await _keep_last(svc.graphs.storage, key, 1)


@router.post("/threads/{thread_id}/copy", responses=responses(409))
async def copy(thread_id: ThreadId, svc: Svc, principal: Caller) -> dict[str, Any]:
    """A new thread of the caller's with this one's metadata, status, checkpoints and
    idempotency journal records (so the copy never repeats an effect the source made)."""
    source = await load_thread(svc, thread_id, principal)
    if await svc.store.active_runs(source.key):
        raise Conflict(f"thread {thread_id} has a run in progress; copy it afterwards")
    saver = svc.graphs.saver
    new_id = str(uuid.uuid4())
    created = await svc.store.create_thread(new_id, principal.tenant_id, dict(source.metadata))
    assert created is not None  # a fresh uuid4
    try:
        if source.status != created.status:
            await svc.store.update_thread(created.key, status=source.status)
        if saver is not None and not isinstance(saver, bool):
            # the journal goes last, in one write: a failure leaves no journal rows behind
            await copy_thread(saver, source.key, created.key, journal=svc.graphs.journal)
    except Exception:
        await svc.runs.delete_thread_data(created.key)
        await svc.store.delete_thread(created.key, principal.tenant_id)
        raise
    return await thread_json(svc, await load_thread(svc, new_id, principal))


@router.get("/threads/{thread_id}/state")
async def get_state(
    thread_id: ThreadId,
    svc: Svc,
    principal: Caller,
    subgraphs: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    thread = await load_thread(svc, thread_id, principal)
    snapshot = await served_for(svc, thread).snapshot(thread.key)
    return snapshot_json(snapshot, thread_id)


async def _state_at(
    svc: Services, thread: ThreadRecord, checkpoint: dict[str, Any]
) -> dict[str, Any]:
    thread_id = thread.thread_id
    snapshot = await served_for(svc, thread).snapshot(thread.key, checkpoint)
    if not snapshot.values and snapshot.config is None:
        ref = checkpoint.get("checkpoint_id")
        raise Unprocessable(f"checkpoint {ref} not found on thread {thread_id}")
    return snapshot_json(snapshot, thread_id)


@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state_at(
    thread_id: ThreadId,
    checkpoint_id: Annotated[str, Path(pattern=ID_PATTERN)],
    svc: Svc,
    principal: Caller,
    subgraphs: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    thread = await load_thread(svc, thread_id, principal)
    return await _state_at(svc, thread, {"checkpoint_id": checkpoint_id, "checkpoint_ns": ""})


@router.post("/threads/{thread_id}/state/checkpoint")
async def get_state_at_checkpoint(
    thread_id: ThreadId, body: StateAt, svc: Svc, principal: Caller
) -> dict[str, Any]:
    """The state at `checkpoint` (what the SDK's `get_state(checkpoint=…)` sends)."""
    thread = await load_thread(svc, thread_id, principal)
    return await _state_at(svc, thread, body.checkpoint.configurable())


@router.post("/threads/{thread_id}/state", responses=responses(409))
async def update_state(
    thread_id: ThreadId, body: StateUpdate, svc: Svc, principal: Caller
) -> dict[str, Any]:
    """Write values into the thread's state as if `as_node` had returned them."""
    thread = await load_thread(svc, thread_id, principal)
    if await svc.store.active_runs(thread.key):
        raise Conflict(f"thread {thread_id} has a run in progress; update its state afterwards")
    checkpoint: dict[str, Any] = {}
    if body.checkpoint is not None:
        checkpoint.update(body.checkpoint.configurable())
    if body.checkpoint_id:
        checkpoint.update(checkpoint_id=body.checkpoint_id, checkpoint_ns="")
    try:
        done = await served_for(svc, thread).update_state(
            thread.key, body.values, as_node=body.as_node, checkpoint=checkpoint
        )
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
    thread = await load_thread(svc, thread_id, principal)
    before = None
    if isinstance(body.before, str):
        before = {"configurable": {"checkpoint_id": body.before}}
    elif isinstance(body.before, dict) and isinstance(body.before.get("checkpoint_id"), str):
        before = {"configurable": {"checkpoint_id": body.before["checkpoint_id"]}}
    states: list[StateSnapshot] = []
    async for snapshot in served_for(svc, thread).history(
        thread.key,
        filter=body.metadata,
        before=before,  # type: ignore[arg-type]
        limit=body.limit,
    ):
        states.append(snapshot)
    return [snapshot_json(s, thread_id) for s in states]
