"""JSON for the wire: state values, thread states and server-sent events.

State values hold LangChain messages and LangGraph interrupts; they are rendered the way
the LangGraph Agent Server renders them (messages as their pydantic dumps, interrupts as
`{"value", "id"}`), so the official SDK and UIs read them unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from langchain_core.messages import (
    BaseMessage,
    BaseMessageChunk,
    message_chunk_to_message,
    messages_from_dict,
)
from langgraph.types import StateSnapshot
from pydantic import BaseModel

__all__ = [
    "MessagesFormat",
    "dumps",
    "interrupt_json",
    "jsonable",
    "message_of",
    "snapshot_json",
    "sse",
]


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode(errors="replace")
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    return repr(obj)


def dumps(obj: Any) -> bytes:
    """orjson with a fallback for messages, dataclasses and anything else (as repr).

    Text that is not Unicode (a lone surrogate, stored before the API refused it) is sent
    with `?` in its place rather than failing the whole answer.
    """
    try:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        if "surrogates" not in str(exc):
            raise
        text = json.dumps(obj, default=_default, ensure_ascii=False)
        return text.encode("utf-8", errors="replace")


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON types (what a client will read back)."""
    return orjson.loads(dumps(obj))


def sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One server-sent event; the data is a single line of JSON. `event_id` is its `id:`,
    which a client that reconnects sends back as `Last-Event-ID`."""
    head = b"id: " + event_id.encode() + b"\n" if event_id is not None else b""
    return head + b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def interrupt_json(interrupt: Any) -> dict[str, Any]:
    return {
        "value": jsonable(getattr(interrupt, "value", None)),
        "id": getattr(interrupt, "id", ""),
    }


def _checkpoint(config: Mapping[str, Any] | None, thread_id: str) -> dict[str, Any] | None:
    """A checkpoint's reference as the client names it: by the thread's id (the saver knows
    the thread by its key, see `keel.server.store`)."""
    if not config:
        return None
    c = config.get("configurable", {})
    return {
        "thread_id": thread_id,
        "checkpoint_ns": c.get("checkpoint_ns", ""),
        "checkpoint_id": c.get("checkpoint_id"),
        "checkpoint_map": c.get("checkpoint_map"),
    }


def snapshot_json(snapshot: StateSnapshot, thread_id: str) -> dict[str, Any]:
    """A LangGraph `StateSnapshot` of thread `thread_id` (the client's id for it) as the
    protocol's `ThreadState`."""
    tasks = [
        {
            "id": t.id,
            "name": t.name,
            "error": str(t.error) if t.error else None,
            "interrupts": [interrupt_json(i) for i in t.interrupts],
            "checkpoint": None,
            "state": None,
            "result": jsonable(t.result) if t.result is not None else None,
        }
        for t in snapshot.tasks
    ]
    created: Any = snapshot.created_at
    if isinstance(created, datetime):
        created = created.isoformat()
    return {
        "values": jsonable(snapshot.values or {}),
        "next": list(snapshot.next),
        "tasks": tasks,
        "checkpoint": _checkpoint(snapshot.config, thread_id)
        or {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
        "metadata": jsonable(snapshot.metadata or {}),
        "created_at": created,
        "parent_checkpoint": _checkpoint(snapshot.parent_config, thread_id),
        "interrupts": [interrupt_json(i) for i in snapshot.interrupts],
    }


def message_of(value: Any) -> BaseMessage | None:
    """A message as LangGraph streamed it: the object in-process, its dump from a worker."""
    if isinstance(value, BaseMessage):
        return value
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        try:
            return messages_from_dict([{"type": value["type"], "data": value}])[0]
        except (ValueError, TypeError, KeyError):
            return None
    return None


class MessagesFormat:
    """The protocol's `messages` stream mode, made from LangGraph's `(message, metadata)` pairs.

    A message's first piece is announced by `messages/metadata` (`{id: {"metadata": …}}`);
    then each token chunk gives `messages/partial` with the message so far, and a whole
    message `messages/complete`, each as a one-item list. `messages-tuple` keeps the pairs.
    One per stream: it accumulates the chunks of the messages it has seen.
    """

    def __init__(self) -> None:
        self._seen: dict[str, BaseMessage] = {}

    def events(self, data: Any) -> list[tuple[str, Any]]:
        if not isinstance(data, list | tuple) or len(data) != 2:
            return [("messages", data)]
        message, metadata = message_of(data[0]), data[1]
        if message is None:
            return [("messages", data)]
        out: list[tuple[str, Any]] = []
        key = message.id or f"anonymous-{len(self._seen)}"
        known = self._seen.get(key)
        if known is None:
            out.append(("messages/metadata", {key: {"metadata": metadata}}))
            known = message
        elif isinstance(known, BaseMessageChunk) and isinstance(message, BaseMessageChunk):
            known = known + message
        else:
            known = message
        self._seen[key] = known
        if isinstance(message, BaseMessageChunk):
            out.append(("messages/partial", [message_chunk_to_message(known)]))
        else:
            out.append(("messages/complete", [known]))
        return out
