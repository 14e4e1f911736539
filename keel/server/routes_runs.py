"""Runs on threads and stateless runs: background, wait, stream, join, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from keel.server.auth import Principal
from keel.server.deps import Caller, Services, Svc, load_thread
from keel.server.encode import MessagesFormat, jsonable, sse
from keel.server.errors import (
    COMMON_ERRORS,
    ApiError,
    Conflict,
    NotFound,
    Unavailable,
    Unprocessable,
    responses,
)
from keel.server.handles import run_json
from keel.server.resume import resume_after
from keel.server.runs import RunHandle, question_from
from keel.server.schemas import (
    ID_PATTERN,
    MAX_OFFSET,
    RunCreate,
    StatelessRunCreate,
    StreamMode,
)
from keel.server.served import ServedGraph
from keel.server.store import (
    ACTIVE_RUN_STATUSES,
    RunRecord,
    ThreadRecord,
    is_db_outage,
    public_thread_id,
    through_outage,
)
from keel.server.targets import Target, claim_thread, resolve_target
from keel.server.webhooks import check_webhook

__all__ = ["router"]

router = APIRouter(tags=["runs"], responses=COMMON_ERRORS)
ThreadId = Annotated[str, Path(pattern=ID_PATTERN)]
RunId = Annotated[str, Path(pattern=ID_PATTERN)]
JOIN_POLL_S = 0.25
BATCH_MAX = 100
"""Runs one `POST /runs/batch` may create."""
RunBatch = Annotated[list[StatelessRunCreate], Body(min_length=1, max_length=BATCH_MAX)]


class EventStream(StreamingResponse):
    """Server-sent events (what the OpenAPI schema names for the stream routes)."""

    media_type = "text/event-stream"


STREAM: dict[str, Any] = {"response_class": EventStream}


def _streamed(*errors: int) -> dict[int | str, dict[str, Any]]:
    """A stream route's answers: its events, then the errors it may give instead."""
    events = {
        "description": "Server-sent events: `metadata` first, then the run's stream modes' "
        "events, then `end` (or `error`); each with an `id:` to resume after.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    # named outright: a `model` would be documented in the route's own media type
    json_error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    failures = {
        status: {"description": r["description"], "content": json_error}
        for status, r in {**COMMON_ERRORS, **responses(*errors)}.items()
    }
    return {200: events, **failures}


def _run_path(handle: RunHandle) -> str:
    r = handle.record
    return f"/threads/{public_thread_id(r.thread_id)}/runs/{r.run_id}"


def _location(handle: RunHandle) -> dict[str, str]:
    return {"Content-Location": _run_path(handle)}


def _join_location(handle: RunHandle) -> dict[str, str]:
    """`Location`: where the SDK re-joins a `runs/wait` whose answer was cut off."""
    return {**_location(handle), "Location": f"{_run_path(handle)}/join"}


async def _target(svc: Services, principal: Principal, body: RunCreate) -> Target:
    return await resolve_target(svc.assistants, svc.graphs, principal, body)


async def _thread_for(
    svc: Services, principal: Principal, thread_id: str, body: RunCreate, graph_id: str
) -> ThreadRecord:
    thread = await svc.store.get_thread(thread_id, principal.tenant_id)
    if thread is not None:
        return thread
    if body.if_not_exists == "create":
        created = await svc.store.create_thread(
            thread_id, principal.tenant_id, {"graph_id": graph_id}
        )
        if created is not None:
            return created
    raise NotFound(f"thread {thread_id} not found")


async def _start(
    svc: Services,
    principal: Principal,
    thread_id: str | None,
    body: RunCreate,
    *,
    background: bool = False,
    streamed: bool = False,
) -> RunHandle:
    """Admit the run, waiting out a database outage (a Postgres restart) for up to
    `KEEL_SERVICE__ADMISSION_OUTAGE_WAIT_S` before answering 503 with Retry-After.

    What admission reads and writes before the run is recorded may be done again; the run
    is recorded once (`RunManager.start`), so a retry never makes two. A stateless run's
    thread keeps its id across tries."""
    stateless_id = str(uuid.uuid4()) if thread_id is None else None
    try:
        return await through_outage(
            lambda: _admit(
                svc,
                principal,
                thread_id,
                body,
                stateless_id=stateless_id,
                background=background,
                streamed=streamed,
            ),
            within_s=svc.runs.settings.admission_outage_wait_s,
        )
    except Exception as exc:
        if is_db_outage(exc):
            raise Unavailable(
                "the database is not reachable; retry shortly", headers={"Retry-After": "2"}
            ) from exc
        raise


async def _admit(
    svc: Services,
    principal: Principal,
    thread_id: str | None,
    body: RunCreate,
    *,
    stateless_id: str | None,
    background: bool,
    streamed: bool,
) -> RunHandle:
    target = await _target(svc, principal, body)
    assistant_id, served, _, graph_id = target
    check_webhook(body.webhook, svc.runs.webhooks.policy)
    await _check_command(served, body, stateless=thread_id is None)
    temporary = created = False
    if thread_id is None:
        assert stateless_id is not None
        made = await svc.store.create_thread(
            stateless_id,
            principal.tenant_id,
            {"graph_id": graph_id, "assistant_id": assistant_id},
        )
        # None: an earlier try made it before the database went away
        thread = made or await svc.store.get_thread(stateless_id, principal.tenant_id)
        assert thread is not None
        temporary = (body.on_completion or "delete") == "delete"
        created = True
    else:
        thread = await _thread_for(svc, principal, thread_id, body, graph_id)
        await claim_thread(svc.store, svc.graphs, thread, target)
        if body.command is not None:
            await _check_thread_state(served, thread)
    try:
        return await svc.runs.start(
            thread,
            principal,
            body,
            temporary=temporary,
            background=background,
            streamed=streamed,
            fresh=created,
            target=target,
        )
    except Exception:
        if created:  # the run was refused: the thread made for it goes too
            # (in an outage this may fail: the next try then takes the thread up again)
            with contextlib.suppress(Exception):
                await svc.store.delete_thread(thread.key, principal.tenant_id)
        raise


async def _check_command(served: ServedGraph, body: RunCreate, *, stateless: bool) -> None:
    """422 for a command no thread state could take: on a new thread, or to unknown nodes."""
    if body.command is None:
        return
    if stateless:
        raise Unprocessable(
            "a stateless run starts a new thread, which has no state for a 'command': give 'input'"
        )
    nodes = await served.nodes()
    unknown = [n for n in body.command.targets if n not in nodes]
    if unknown:
        raise Unprocessable(
            f"command.goto names no node of the graph: {', '.join(map(repr, unknown))} "
            f"(nodes: {', '.join(sorted(nodes))})"
        )


async def _check_thread_state(served: ServedGraph, thread: ThreadRecord) -> None:
    """A command resumes, updates or redirects a thread's state: it needs one."""
    snapshot = await served.snapshot(thread.key)
    if snapshot.config is None or not snapshot.values:
        raise Unprocessable(
            f"thread {thread.thread_id} has no state yet for a 'command': start it with 'input'"
        )


def _wanted(event: str, modes: list[str]) -> bool:
    if event in ("metadata", "end", "error"):
        return True
    if event == "messages":
        return "messages" in modes or "messages-tuple" in modes
    return event in modes


async def _events(
    svc: Services,
    handle: RunHandle,
    modes: list[str],
    cancel_on_disconnect: bool,
    after: str | None = None,
) -> AsyncIterator[bytes]:
    finished = False
    protocol_messages = "messages" in modes and "messages-tuple" not in modes
    messages = MessagesFormat()
    try:
        async for event_id, event, data in svc.runs.stream(handle, after):
            if not _wanted(event, modes):
                continue
            if event == "messages" and protocol_messages:
                # one pair may be two events: only the last carries the id, so a client
                # that resumes after it has had both
                parts = messages.events(data)
                for n, (name, part) in enumerate(parts, start=1):
                    yield sse(name, part, event_id if n == len(parts) else None)
                continue
            yield sse(event, data, event_id)
        finished = True
    finally:
        if not finished and cancel_on_disconnect and not handle.done.is_set():
            await _cancel_abandoned(svc, handle)


async def _cancel_abandoned(svc: Services, handle: RunHandle) -> None:
    """The client went away and asked (`on_disconnect: "cancel"`) for its run to stop."""
    r = handle.record
    await svc.runs.cancel_run(r.run_id, r.thread_id, reason="the client disconnected", wait=False)


async def _disconnected(request: Request) -> None:
    """Return once the client has closed the connection (the body is already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _stream(svc: Services, handle: RunHandle, body: RunCreate) -> EventStream:
    return EventStream(
        _events(svc, handle, handle.modes, body.on_disconnect == "cancel"),
        media_type="text/event-stream",
        headers={
            **_location(handle),
            # where the SDK reconnects (with Last-Event-ID) if the connection drops
            "Location": f"{_run_path(handle)}/stream",
            "Cache-Control": "no-store",
        },
    )


async def _wait(
    svc: Services, handle: RunHandle, body: RunCreate, request: Request
) -> JSONResponse:
    """The run's result; with `on_disconnect: "cancel"` a client that leaves cancels the run."""
    if body.on_disconnect != "cancel":
        return JSONResponse(
            content=await svc.runs.wait_result(handle), headers=_join_location(handle)
        )
    result = asyncio.create_task(svc.runs.wait_result(handle))
    gone = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait((result, gone), return_when=asyncio.FIRST_COMPLETED)
        if not result.done():
            await _cancel_abandoned(svc, handle)
    finally:
        for task in (gone, result):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if result.cancelled():  # nobody reads this answer: the client is gone
        return JSONResponse({"error": "client_disconnected"}, status_code=499)
    return JSONResponse(content=result.result(), headers=_join_location(handle))


# stateful -----------------------------------------------------------------------------


@router.post("/threads/{thread_id}/runs", responses=responses(409, 429))
async def create_run(
    thread_id: ThreadId, body: RunCreate, svc: Svc, principal: Caller
) -> JSONResponse:
    handle = await _start(svc, principal, thread_id, body, background=True)
    return JSONResponse(jsonable(run_json(handle.record, handle)), headers=_location(handle))


@router.post("/threads/{thread_id}/runs/wait", responses=responses(409, 429))
async def wait_run(
    thread_id: ThreadId, body: RunCreate, svc: Svc, principal: Caller, request: Request
) -> JSONResponse:
    return await _wait(svc, await _start(svc, principal, thread_id, body), body, request)


@router.post("/threads/{thread_id}/runs/stream", **STREAM, responses=_streamed(409, 429))
async def stream_run(
    thread_id: ThreadId, body: RunCreate, svc: Svc, principal: Caller
) -> EventStream:
    return _stream(svc, await _start(svc, principal, thread_id, body, streamed=True), body)


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: ThreadId,
    svc: Svc,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    status: Annotated[
        Literal["pending", "running", "error", "success", "timeout", "interrupted"] | None,
        Query(),
    ] = None,
) -> list[dict[str, Any]]:
    thread = await load_thread(svc, thread_id, principal)
    found = await svc.store.list_runs(
        thread.key, principal.tenant_id, status=status, limit=limit, offset=offset
    )
    return [jsonable(run_json(r, svc.runs.handles.get(r.run_id))) for r in found]


async def _run(svc: Services, principal: Principal, thread_id: str, run_id: str) -> RunRecord:
    record = await svc.store.get_run(run_id, thread_id, principal.tenant_id)
    if record is None:
        raise NotFound(f"run {run_id} not found on thread {thread_id}")
    return record


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(
    thread_id: ThreadId, run_id: RunId, svc: Svc, principal: Caller
) -> dict[str, Any]:
    record = await _run(svc, principal, thread_id, run_id)
    result: dict[str, Any] = jsonable(run_json(record, svc.runs.handles.get(run_id)))
    return result


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(thread_id: ThreadId, run_id: RunId, svc: Svc, principal: Caller) -> Any:
    record = await _run(svc, principal, thread_id, run_id)
    handle = svc.runs.handles.get(run_id)
    if handle is None:  # executing in another process, or over
        handle = RunHandle(record=record, modes=[], remote=True)
    return await svc.runs.wait_result(handle)


@router.get("/threads/{thread_id}/runs/{run_id}/stream", **STREAM, responses=_streamed(410))
async def join_stream(
    thread_id: ThreadId,
    run_id: RunId,
    svc: Svc,
    principal: Caller,
    cancel_on_disconnect: Annotated[bool, Query()] = False,
    stream_mode: Annotated[list[StreamMode | Literal[""]] | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> EventStream:
    """The run's events; with `Last-Event-ID`, only those after it (see `resume`).

    `stream_mode` narrows the run's own modes; none (the SDK sends `?stream_mode=` when it
    has none) means all of them."""
    record = await _run(svc, principal, thread_id, run_id)
    handle = svc.runs.handles.get(run_id)
    if handle is None:  # executing in another process, or over
        kwargs_modes = RunCreate.model_validate(record.kwargs).modes
        handle = RunHandle(record=record, modes=kwargs_modes, remote=True)
    after = await resume_after(svc.runs, handle, last_event_id)
    modes: list[str] = [m for m in stream_mode or () if m] or handle.modes
    return EventStream(
        _events(svc, handle, modes, cancel_on_disconnect, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=204)
async def cancel_run(
    thread_id: ThreadId,
    run_id: RunId,
    svc: Svc,
    principal: Caller,
    wait: Annotated[bool, Query()] = False,
    action: Annotated[Literal["interrupt", "rollback"], Query()] = "interrupt",
) -> Response:
    record = await _run(svc, principal, thread_id, run_id)
    if action == "rollback":
        raise Unprocessable("cancel action 'rollback' is not supported; use 'interrupt'")
    cancelled = await svc.runs.cancel_run(
        run_id, record.thread_id, reason="cancelled by the client", wait=wait
    )
    if not cancelled:  # as the reference server: nothing to cancel is a 404
        raise NotFound(f"run {run_id} is not pending or running (status {record.status})")
    return Response(status_code=204)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, responses=responses(409))
async def delete_run(thread_id: ThreadId, run_id: RunId, svc: Svc, principal: Caller) -> Response:
    record = await _run(svc, principal, thread_id, run_id)
    if record.status in ACTIVE_RUN_STATUSES:
        raise Conflict(f"run {run_id} is still {record.status}; cancel it first")
    await svc.store.delete_run(run_id)
    return Response(status_code=204)


# stateless ----------------------------------------------------------------------------


@router.post("/runs", responses=responses(429))
async def create_stateless(body: RunCreate, svc: Svc, principal: Caller) -> JSONResponse:
    handle = await _start(svc, principal, None, body, background=True)
    return JSONResponse(jsonable(run_json(handle.record, handle)), headers=_location(handle))


@router.post("/runs/wait", responses=responses(429))
async def wait_stateless(
    body: RunCreate, svc: Svc, principal: Caller, request: Request
) -> JSONResponse:
    return await _wait(svc, await _start(svc, principal, None, body), body, request)


@router.post("/runs/stream", **STREAM, responses=_streamed(429))
async def stream_stateless(body: RunCreate, svc: Svc, principal: Caller) -> EventStream:
    return _stream(svc, await _start(svc, principal, None, body, streamed=True), body)


async def _check_batch_item(
    svc: Services, principal: Principal, index: int, body: RunCreate
) -> None:
    """Refuse an item `_start` would refuse, before any run of the batch starts."""
    try:
        _, served, _, _ = await _target(svc, principal, body)
        check_webhook(body.webhook, svc.runs.webhooks.policy)
        await _check_command(served, body, stateless=True)
        if served.kind == "keel":
            question_from(body.input or {})
        elif body.input is None:
            raise Unprocessable("a stateless run needs 'input'")
    except ApiError as exc:
        raise type(exc)(f"runs[{index}]: {exc.message}") from exc


async def _batch_room(svc: Services, n: int) -> None:
    """429 up front when the bounded queue has no room for all `n` runs."""
    admission = svc.runs.admission
    if admission is None:
        return
    if svc.runs.queue is not None:
        queued = await svc.store.count_runs(["pending"])
    else:
        queued = svc.runs.queued
    admission.check_room(queued, n)


@router.post("/runs/batch", responses=responses(429))
async def create_stateless_batch(body: RunBatch, svc: Svc, principal: Caller) -> JSONResponse:
    """Stateless background runs, all or none.

    Every item is checked and the queue's room for all of them is checked before any
    starts. Each run then passes admission as `POST /runs` does; if one is refused (the
    tenant's rate ran out, or other clients filled the queue meanwhile) the batch's runs
    already started are cancelled and the client gets that run's error.
    """
    for index, item in enumerate(body):
        await _check_batch_item(svc, principal, index, item)
    await _batch_room(svc, len(body))
    handles: list[RunHandle] = []
    created: list[Any] = []  # each run as it was created, like `POST /runs`: a run started
    try:  # first may end while the batch's later runs are admitted (40 ms for a scripted run)
        for item in body:
            handle = await _start(svc, principal, None, item, background=True)
            handles.append(handle)
            created.append(jsonable(run_json(handle.record, handle)))
    except Exception:
        for handle in handles:
            with contextlib.suppress(Exception):
                await svc.runs.cancel_run(
                    handle.run_id,
                    handle.record.thread_id,
                    reason="another run of its batch was refused",
                    wait=False,
                )
        raise
    return JSONResponse(created)
