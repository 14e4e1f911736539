"""The SDK's thread-centric streaming (`client.threads.stream`, the v3 protocol), on top of
the run machinery: a command starts or resumes a run like `POST /threads/{id}/runs`, and the
thread's event stream is its runs' own events, re-shaped.

- `POST /threads/{thread_id}/commands`: `run.start` (creates the thread when missing),
  `input.respond` (resumes an interrupt by its id), `state.get`, `state.listCheckpoints`,
  `state.fork` (a run from an earlier checkpoint) and `agent.getTree` (the root agent only).
  `subscription.*` (WebSocket commands: over HTTP each stream is one subscription) and
  `input.inject` are a 501 `not_supported` naming them, an unknown command a 422
  `unknown_command`.
- `POST /threads/{thread_id}/stream/events` with `{channels, namespaces?, depth?, since?}`:
  the thread's latest run, then each later one, as protocol events (`type: "event"`,
  `method`, `params: {namespace: [], timestamp, data}`, `seq`, `event_id`) on the channels
  `lifecycle` (`started`, then `completed` / `failed` / `interrupted`), `input`
  (`input.requested`, one per interrupt), `values`, `updates`, `messages` (each AI message as
  `message-start`, content blocks, `message-finish`), `tools` (a call told when its result
  arrives), `checkpoints`, `tasks` and `custom` (`custom:<name>` too). `since` replays only
  the events after that `seq`. An unknown channel is a 422 naming it.

A `seq` is `run ordinal * 10^10 + event position * 1000 + part`: the same event keeps its
number on every connection (the ordinal counts the thread's runs by creation), and it grows
across the thread's runs. Every event is at the root namespace: subgraphs stream as their
parent node (as `stream_subgraphs` is refused).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from langchain_core.language_models._compat_bridge import message_to_events
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.runnables import RunnableConfig

from keel.server.deps import Caller, Services, Svc
from keel.server.encode import jsonable, message_of, sse
from keel.server.errors import COMMON_ERRORS, ApiError, ErrorBody, NotFound
from keel.server.handles import RunHandle
from keel.server.routes_runs import EventStream, _start, _streamed
from keel.server.schemas import ID_PATTERN, RunCreate
from keel.server.served import ServedGraph
from keel.server.store import ACTIVE_RUN_STATUSES, RunRecord

__all__ = ["router"]

router = APIRouter(tags=["thread streaming"], responses=COMMON_ERRORS)
ThreadId = Annotated[str, Path(pattern=ID_PATTERN)]

SERVED_CHANNELS = frozenset(
    {"lifecycle", "input", "values", "updates", "messages", "tools", "checkpoints", "tasks"}
    | {"custom"}
)
UNSERVED_COMMANDS = frozenset(
    {"subscription.subscribe", "subscription.unsubscribe", "subscription.reconnect", "input.inject"}
)
SERVED_COMMANDS = (
    "run.start, input.respond, state.get, state.listCheckpoints, state.fork, agent.getTree"
)
RUN_MODES = ["values", "updates", "messages-tuple", "checkpoints", "tasks", "custom"]
"""What a run started by command streams (its events feed the thread's stream)."""
POLL_S = 0.25
"""How often a thread's stream looks for the thread's next run once one has ended."""
_RUN_STEP = 10**10
_EVENT_STEP = 1000
_METHOD_CHANNEL = {"input.requested": "input"}
_PAGE = 500


class ProtocolError(Exception):
    """A command the protocol's error envelope answers (`{type: "error", error, message}`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# commands ------------------------------------------------------------------------------


NOT_SERVED: dict[int | str, dict[str, Any]] = {
    501: {"model": ErrorBody, "description": "A protocol command Keel does not serve (named)."}
}
STREAMED = _streamed() | {
    200: {
        "description": "Server-sent protocol events (`event:` the method, `id:` the `seq`), "
        "for as long as the client listens.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.post("/threads/{thread_id}/commands", responses=NOT_SERVED)
async def thread_command(
    thread_id: ThreadId, request: Request, svc: Svc, principal: Caller
) -> JSONResponse:
    """One protocol command: `{id, method, params}` in, `{type, id, result}` out."""
    command_id: Any = None
    try:
        command = _json(await request.body())
        command_id = command.get("id") if isinstance(command, dict) else None
        if (
            not isinstance(command, dict)
            or not isinstance(command_id, int)
            or not isinstance(command.get("method"), str)
        ):
            raise ProtocolError(
                422, "invalid_argument", "a command is {id: integer, method: string, params}"
            )
        method, params = command["method"], command.get("params") or {}
        if not isinstance(params, dict):
            raise ProtocolError(422, "invalid_argument", f"{method}: params must be an object")
        if method == "run.start":
            result = await _run_start(svc, principal, thread_id, params)
        elif method == "input.respond":
            result = await _input_respond(svc, principal, thread_id, params)
        elif method in _STATE_COMMANDS:
            result = await _STATE_COMMANDS[method](svc, principal, thread_id, params)
        elif method in UNSERVED_COMMANDS:
            raise ProtocolError(
                501,
                "not_supported",
                f"command {method!r} is not served by Keel (over HTTP each stream/events "
                f"connection is one subscription); served: {SERVED_COMMANDS}",
            )
        else:
            raise ProtocolError(422, "unknown_command", f"unknown command {method!r}")
    except ProtocolError as exc:
        return _error(command_id, exc.status, exc.code, exc.message)
    except ApiError as exc:
        code = {404: "no_such_run", 403: "permission_denied"}.get(exc.status, "invalid_argument")
        return _error(command_id, exc.status, code, exc.message)
    return JSONResponse({"type": "success", "id": command_id, "result": result})


def _error(command_id: Any, status: int, code: str, message: str) -> JSONResponse:
    body = {"type": "error", "id": command_id, "error": code, "message": message}
    return JSONResponse(body, status_code=status)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, "invalid_argument", f"the body is not JSON: {exc}") from exc


def _run_body(params: Mapping[str, Any], **fields: Any) -> RunCreate:
    """A run body as `POST /threads/{id}/runs` takes it, streaming what the thread shows."""
    for name in ("langsmith_tracer", "goto"):
        if params.get(name) is not None:
            raise ProtocolError(501, "not_supported", f"{name!r} is not served by Keel")
    try:
        return RunCreate.model_validate(
            {
                "config": params.get("config"),
                "metadata": params.get("metadata"),
                "stream_mode": RUN_MODES,
                "stream_resumable": True,
                **fields,
            }
        )
    except ValueError as exc:
        raise ProtocolError(422, "invalid_argument", str(exc)) from exc


async def _run_start(
    svc: Services, principal: Any, thread_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    assistant_id = params.get("assistant_id")
    if not isinstance(assistant_id, str) or not assistant_id:
        raise ProtocolError(422, "invalid_argument", "run.start needs params.assistant_id")
    payload = params.get("input")
    if payload is not None and not isinstance(payload, dict):
        raise ProtocolError(422, "invalid_argument", "run.start: input must be an object")
    body = _run_body(params, assistant_id=assistant_id, input=payload or {}, if_not_exists="create")
    handle = await _start(svc, principal, thread_id, body, background=True, streamed=True)
    return {"run_id": handle.run_id}


async def _input_respond(
    svc: Services, principal: Any, thread_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Resume the thread's interrupts: `{interrupt_id, response}` or `{responses: [...]}`."""
    entries = params.get("responses")
    if entries is None:
        entries = [params]
    if not isinstance(entries, list) or not entries:
        raise ProtocolError(422, "invalid_argument", "input.respond needs a response")
    thread = await svc.store.get_thread(thread_id, principal.tenant_id)
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    served = await svc.runs.runner.served_for(thread.key)
    open_ids = {i.id for i in (await served.snapshot(thread.key)).interrupts}
    resume: dict[str, Any] = {}
    for entry in entries:
        interrupt_id = entry.get("interrupt_id") if isinstance(entry, dict) else None
        if not isinstance(interrupt_id, str) or interrupt_id not in open_ids:
            raise ProtocolError(
                404,
                "no_such_interrupt",
                f"thread {thread_id} has no open interrupt {interrupt_id!r}",
            )
        if entry.get("namespace"):
            raise ProtocolError(
                404, "no_such_namespace", "Keel's interrupts are all at the root namespace []"
            )
        resume[interrupt_id] = entry.get("response")
    assistant_id = thread.metadata.get("assistant_id") or thread.metadata.get("graph_id")
    update = params.get("update")
    command: dict[str, Any] = {"resume": resume, "update": update} if update else {"resume": resume}
    body = _run_body(params, assistant_id=str(assistant_id), command=command)
    handle = await _start(svc, principal, thread_id, body, background=True, streamed=True)
    return {"run_id": handle.run_id}


async def _thread_graph(
    svc: Services, principal: Any, thread_id: str, params: Mapping[str, Any]
) -> tuple[ServedGraph, str]:
    """The thread's served graph and key, once the thread is the caller's; only the root
    namespace."""
    thread = await svc.store.get_thread(thread_id, principal.tenant_id)
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    if params.get("namespace"):
        raise ProtocolError(
            404, "no_such_namespace", "Keel's threads have only the root namespace []"
        )
    return await svc.runs.runner.served_for(thread.key), thread.key


def _checkpoint_id(snapshot: Any) -> str | None:
    found = ((snapshot.config or {}).get("configurable") or {}).get("checkpoint_id")
    return str(found) if found else None


async def _state_get(
    svc: Services, principal: Any, thread_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """`{values, checkpoint: {id}}`; `keys` picks some of the values."""
    served, key = await _thread_graph(svc, principal, thread_id, params)
    snapshot = await served.snapshot(key)
    values: dict[str, Any] = jsonable(snapshot.values or {})
    keys = params.get("keys")
    if isinstance(keys, list):
        values = {k: v for k, v in values.items() if k in keys}
    found: dict[str, Any] = {"values": values}
    if _checkpoint_id(snapshot):
        found["checkpoint"] = {"id": _checkpoint_id(snapshot), "ns": ""}
    return found


async def _list_checkpoints(
    svc: Services, principal: Any, thread_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The thread's checkpoints, newest first: `limit` (10), `before` a checkpoint id."""
    served, key = await _thread_graph(svc, principal, thread_id, params)
    limit, before = params.get("limit", 10), params.get("before")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise ProtocolError(422, "invalid_argument", "limit: an integer from 1 to 1000")
    if before is not None and not isinstance(before, str):
        raise ProtocolError(422, "invalid_argument", "before: a checkpoint id")
    cursor = RunnableConfig(configurable={"checkpoint_id": before}) if before else None
    found = []
    async for snapshot in served.history(key, filter=None, before=cursor, limit=limit):
        created: Any = snapshot.created_at
        found.append(
            {
                "id": _checkpoint_id(snapshot),
                "timestamp": created.isoformat() if hasattr(created, "isoformat") else created,
                "step": (snapshot.metadata or {}).get("step"),
                "metadata": jsonable(snapshot.metadata or {}),
            }
        )
    return {"checkpoints": found}


async def _state_fork(
    svc: Services, principal: Any, thread_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """A run on the thread from an earlier checkpoint (with `input`, or continuing)."""
    await _thread_graph(svc, principal, thread_id, params)
    checkpoint_id = params.get("checkpoint_id")
    if not isinstance(checkpoint_id, str) or not checkpoint_id:
        raise ProtocolError(422, "invalid_argument", "state.fork needs params.checkpoint_id")
    payload = params.get("input")
    if payload is not None and not isinstance(payload, dict):
        raise ProtocolError(422, "invalid_argument", "state.fork: input must be an object")
    body = _run_body(
        params,
        assistant_id=await _assistant_of(svc, principal, thread_id),
        input=payload,
        checkpoint_id=checkpoint_id,
    )
    handle = await _start(svc, principal, thread_id, body, background=True, streamed=True)
    return {"run_id": handle.run_id, "thread_id": thread_id}


_TREE_STATUS = {"success": "completed", "error": "failed", "interrupted": "interrupted"}


async def _agent_tree(
    svc: Services, principal: Any, thread_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The root agent and how the thread's latest (or named) run stands; no subgraph nodes."""
    thread = await svc.store.get_thread(thread_id, principal.tenant_id)
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    run_id = params.get("run_id")
    if isinstance(run_id, str):
        record = await svc.store.get_run(run_id, thread_id, principal.tenant_id)
        if record is None:
            raise ProtocolError(404, "no_such_run", f"run {run_id} not found on thread {thread_id}")
    else:
        latest = await svc.store.list_runs(thread.key, principal.tenant_id, limit=1)
        record = latest[0] if latest else None
    status = _TREE_STATUS.get(record.status, "running") if record else "started"
    graph = str(thread.metadata.get("graph_id") or "")
    return {"tree": {"namespace": [], "status": status, "graph_name": graph, "children": []}}


async def _assistant_of(svc: Services, principal: Any, thread_id: str) -> str:
    thread = await svc.store.get_thread(thread_id, principal.tenant_id)
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    return str(thread.metadata.get("assistant_id") or thread.metadata.get("graph_id"))


_STATE_COMMANDS = {
    "state.get": _state_get,
    "state.listCheckpoints": _list_checkpoints,
    "state.fork": _state_fork,
    "agent.getTree": _agent_tree,
}


# the thread's event stream ---------------------------------------------------------------


@router.post("/threads/{thread_id}/stream/events", response_class=EventStream, responses=STREAMED)
async def thread_events(
    thread_id: ThreadId, request: Request, svc: Svc, principal: Caller
) -> Response:
    """The thread's runs as protocol events, filtered; `since` resumes after a `seq`."""
    try:
        request_body = _json(await request.body())
    except ProtocolError as exc:
        return _error(None, exc.status, exc.code, exc.message)
    flt = _Filter.of(request_body)
    if isinstance(flt, JSONResponse):
        return flt
    thread = await svc.store.get_thread(thread_id, principal.tenant_id)
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    return EventStream(
        _thread_stream(svc, principal.tenant_id, thread.key, flt),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


class _Filter:
    def __init__(self, channels: set[str], namespaces: list[list[str]] | None, since: int) -> None:
        self.channels, self.namespaces, self.since = channels, namespaces, since

    @classmethod
    def of(cls, body: Any) -> _Filter | JSONResponse:
        channels = body.get("channels") if isinstance(body, dict) else None
        if not isinstance(channels, list) or not channels:
            return _error(None, 422, "invalid_argument", "channels: a non-empty list is required")
        unknown = [
            repr(c)
            for c in channels
            if not isinstance(c, str) or (c not in SERVED_CHANNELS and not c.startswith("custom:"))
        ]
        if unknown:
            served = ", ".join(sorted(SERVED_CHANNELS))
            return _error(
                None,
                422,
                "invalid_argument",
                f"unknown channels: {', '.join(unknown)} (channels: {served}, custom:<name>)",
            )
        namespaces = body.get("namespaces")
        if namespaces is not None and not (
            isinstance(namespaces, list)
            and all(isinstance(n, list) and all(isinstance(s, str) for s in n) for n in namespaces)
        ):
            return _error(None, 422, "invalid_argument", "namespaces: a list of lists of names")
        since = body.get("since")
        if since is not None and (
            not isinstance(since, int) or isinstance(since, bool) or since < 0
        ):
            return _error(None, 422, "invalid_argument", "since: a sequence number (integer >= 0)")
        return cls(set(channels), namespaces, since or 0)

    def wants(self, event: Mapping[str, Any]) -> bool:
        if event["seq"] <= self.since:
            return False
        if self.namespaces is not None and [] not in self.namespaces:
            return False  # every event is at the root namespace, a prefix only of []
        method = event["method"]
        if _METHOD_CHANNEL.get(method, method) in self.channels:
            return True
        name = event["params"]["data"].get("name") if method == "custom" else None
        return name is not None and f"custom:{name}" in self.channels


async def _thread_stream(
    svc: Services, tenant_id: str, key: str, flt: _Filter
) -> AsyncIterator[bytes]:
    """The latest run of the thread keyed `key`, then every later run, as long as the
    client listens."""
    runs = await _runs_oldest_first(svc, tenant_id, key)
    followed = {r.run_id for r in runs[:-1]}
    while True:
        pending = [(n, r) for n, r in enumerate(runs, start=1) if r.run_id not in followed]
        for ordinal, record in pending:
            followed.add(record.run_id)
            async for event in _run_events(svc, record, ordinal):
                if flt.wants(event):
                    yield sse(event["method"], event, str(event["seq"]))
        while True:  # one cheap read per poll: has a newer run begun?
            newest = await svc.store.list_runs(key, tenant_id, limit=1)
            if newest and newest[0].run_id not in followed:
                break
            await asyncio.sleep(POLL_S)
        runs = await _runs_oldest_first(svc, tenant_id, key)


async def _runs_oldest_first(svc: Services, tenant_id: str, key: str) -> list[RunRecord]:
    """Every run of the thread keyed `key` (a run's place among them numbers its events)."""
    found: list[RunRecord] = []
    while True:
        page = await svc.store.list_runs(key, tenant_id, limit=_PAGE, offset=len(found))
        found += page
        if len(page) < _PAGE:
            return sorted(found, key=lambda r: (r.created_at, r.run_id))


async def _run_events(
    svc: Services, record: RunRecord, ordinal: int
) -> AsyncIterator[dict[str, Any]]:
    """One run's events as protocol events, numbered by their place in the run's stream."""
    handle = svc.runs.handles.get(record.run_id)
    if handle is None and svc.runs.queue is None:
        # ended, and its events left this process: only its outcome is told
        if record.status in ACTIVE_RUN_STATUSES:
            return
        for part, event in enumerate(_lifecycle_end(record.status, record.error)):
            yield _envelope(event, ordinal * _RUN_STEP + part)
        return
    if handle is None:
        modes = RunCreate.model_validate(record.kwargs).modes
        handle = RunHandle(record=record, modes=modes, remote=True)
    protocol = _RunProtocol()
    position = 0
    async for _id, kind, data in svc.runs.stream(handle, None):
        position += 1
        for part, event in enumerate(protocol.events(kind, jsonable(data))):
            yield _envelope(event, ordinal * _RUN_STEP + position * _EVENT_STEP + part)


def _envelope(method_data: tuple[str, Any], seq: int) -> dict[str, Any]:
    method, data = method_data
    params = {"namespace": [], "timestamp": int(time.time() * 1000), "data": data}
    return {"type": "event", "method": method, "params": params, "seq": seq, "event_id": str(seq)}


class _RunProtocol:
    """One run's events re-shaped as the protocol's `(method, data)` events.

    An AI message streamed in token chunks is gathered and sent, as `message-start`,
    its content blocks and `message-finish`, once its node's update arrives (or the run
    ends): the protocol's shape, not token by token.
    """

    def __init__(self) -> None:
        self.error: str | None = None
        self.open: dict[str, tuple[AIMessageChunk, dict[str, Any]]] = {}
        self.calls: dict[str, Mapping[str, Any]] = {}
        """The tool calls the model asked for, by id, until their result."""

    def events(self, kind: str, data: Any) -> list[tuple[str, Any]]:
        if kind == "metadata":
            return [("lifecycle", {"event": "started"})]
        if kind == "values":
            return [("values", data)]
        if kind == "custom":
            return [("custom", {"payload": data})]
        if kind == "tasks":
            return [("tasks", data)]
        if kind == "checkpoints" and isinstance(data, dict):
            return [("checkpoints", _checkpoint(data))]
        if kind == "messages":
            return self._message(data)
        if kind == "error" and isinstance(data, dict):
            self.error = str(data.get("message") or data.get("error") or "")
        if kind == "updates" and isinstance(data, dict):
            return [*self._flush(), *_updates(data)]
        if kind == "end" and isinstance(data, dict):
            return [*self._flush(), *_lifecycle_end(str(data.get("status")), self.error)]
        return []

    def _message(self, data: Any) -> list[tuple[str, Any]]:
        if not isinstance(data, list) or len(data) != 2:
            return []
        message, metadata = message_of(data[0]), data[1] if isinstance(data[1], dict) else {}
        if isinstance(message, AIMessageChunk):
            key = message.id or "anonymous"
            known = self.open.get(key)
            self.calls.update({str(c["id"]): c for c in message.tool_calls if c.get("id")})
            self.open[key] = (
                known[0] + message if known else message,
                known[1] if known else metadata,
            )
            return []
        if isinstance(message, AIMessage):
            self.calls.update({str(c["id"]): c for c in message.tool_calls if c.get("id")})
            return _message_events(message, metadata)
        if isinstance(message, ToolMessage):
            return self._tool(message)
        return []  # the user's messages are in `values` / `updates`

    def _tool(self, result: ToolMessage) -> list[tuple[str, Any]]:
        """A tool call, told when its result arrives: `tool-started` with the model's
        arguments, then `tool-finished` with the output (or `tool-error`)."""
        call: Mapping[str, Any] = self.calls.pop(result.tool_call_id, {})
        started = {
            "event": "tool-started",
            "tool_call_id": result.tool_call_id,
            "tool_name": result.name or call.get("name") or "",
            "input": jsonable(call.get("args")),
        }
        ended: dict[str, Any] = (
            {"event": "tool-error", "tool_call_id": result.tool_call_id, "message": result.text}
            if result.status == "error"
            else {"event": "tool-finished", "tool_call_id": result.tool_call_id}
            | {"output": jsonable(result.content)}
        )
        return [("tools", started), ("tools", ended)]

    def _flush(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for chunk, metadata in self.open.values():
            out += _message_events(message_chunk_to_message(chunk), metadata)
        self.open.clear()
        return out


def _message_events(message: BaseMessage, metadata: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A whole message as `message-start` (with the node that wrote it), blocks, finish."""
    out: list[tuple[str, Any]] = []
    for data in message_to_events(message, message_id=message.id):
        event: dict[str, Any] = dict(data)
        if message.id and event["event"] != "message-start":
            event["message_id"] = message.id  # how the SDK routes it to its message
        if event["event"] == "message-start":
            scalars = {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool)}
            event["metadata"] = {**scalars, **(event.get("metadata") or {})}
        out.append(("messages", jsonable(event)))
    return out


def _updates(data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for node, values in data.items():
        if node == "__interrupt__":
            out += [
                (
                    "input.requested",
                    {
                        "interrupt_id": i.get("id"),
                        "payload": i.get("value"),
                        "value": i.get("value"),
                    },
                )
                for i in values or ()
                if isinstance(i, dict)
            ]
        else:
            out.append(
                (
                    "updates",
                    {
                        "node": node,
                        "values": values if isinstance(values, dict) else {"value": values},
                    },
                )
            )
    return out


def _checkpoint(data: Mapping[str, Any]) -> dict[str, Any]:
    """LangGraph's `checkpoints` item as the protocol's `{id, parent_id, step, source}`."""
    own = (data.get("config") or {}).get("configurable") or {}
    parent = (data.get("parent_config") or {}).get("configurable") or {}
    metadata = data.get("metadata") or {}
    found: dict[str, Any] = {"id": own.get("checkpoint_id"), "step": metadata.get("step")}
    if parent.get("checkpoint_id"):
        found["parent_id"] = parent["checkpoint_id"]
    found["source"] = metadata.get("source")
    return found


def _lifecycle_end(status: str, error: str | None) -> list[tuple[str, Any]]:
    if status == "success":
        return [("lifecycle", {"event": "completed"})]
    if status == "interrupted":
        return [("lifecycle", {"event": "interrupted"})]
    return [("lifecycle", {"event": "failed", "error": error or status})]
