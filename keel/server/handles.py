"""A run as the API sees it while it executes: its record, buffered events and completion.

Also the run input rule (`question_from`) and the one assistant's ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from keel.server.errors import NotFound, Unprocessable
from keel.server.store import RunRecord, public_thread_id

__all__ = ["ASSISTANT_ID", "GRAPH_ID", "RunHandle", "question_from", "run_json"]

GRAPH_ID = "agent"
ASSISTANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "keel:assistant:agent"))


def check_assistant(assistant_id: str) -> None:
    """404 unless `assistant_id` names the one assistant (`agent`, or its UUID)."""
    if assistant_id not in (GRAPH_ID, ASSISTANT_ID):
        raise NotFound(f"assistant {assistant_id} not found; the assistant is 'agent'")


MAX_BUFFERED_EVENTS = 10_000


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def run_json(record: RunRecord, handle: RunHandle | None = None) -> dict[str, Any]:
    """A run as `GET /threads/{id}/runs/{run_id}` shows it (and its webhook sends it)."""
    return {
        "run_id": record.run_id,
        "thread_id": public_thread_id(record.thread_id),
        "assistant_id": record.assistant_id,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "status": handle.status if handle else record.status,
        "metadata": record.metadata,
        "multitask_strategy": record.multitask_strategy,
        "kwargs": {k: v for k, v in record.kwargs.items() if k not in ("role", "assistant")},
    }


def question_from(payload: dict[str, Any]) -> str:
    """The user's question in a run input: `question`, or the last user message."""
    question = payload.get("question")
    if isinstance(question, str) and question.strip():
        return question
    messages = payload.get("messages")
    if isinstance(messages, str) and messages.strip():
        return messages
    if isinstance(messages, dict):
        messages = [messages]
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, str) and m.strip():
                return m
            if not isinstance(m, dict):
                continue
            if m.get("role", m.get("type")) not in ("user", "human"):
                continue
            content = m.get("content")
            if isinstance(content, list):
                content = " ".join(
                    str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
                )
            if isinstance(content, str) and content.strip():
                return content
    raise Unprocessable(
        "input needs 'messages' with a user message, e.g. "
        '{"messages": [{"role": "user", "content": "…"}]}, or a \'question\' string'
    )


@dataclass
class RunHandle:
    """A live run: its record, its buffered stream events and its completion."""

    record: RunRecord
    modes: list[str]
    keep: int = MAX_BUFFERED_EVENTS
    """Events kept for streams and reconnects: the last `keep`; older ones are dropped."""
    emitted: int = 0
    """Events emitted so far, which is the id of the last one (ids are 1, 2, …)."""
    events: deque[tuple[str, Any]] = field(init=False)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    status: str = "pending"
    result: dict[str, Any] = field(default_factory=dict)
    cancel_reason: str | None = None
    remote: bool = False
    """Executed by a `keel worker`, not in this process."""
    temporary: bool = False
    """A stateless run's thread, deleted once the caller has the result."""

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.keep)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def first_kept(self) -> int:
        """The id of the oldest event still kept (`emitted + 1` while none is)."""
        return self.emitted - len(self.events) + 1

    def emit(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self.emitted += 1
        self.changed.set()

    async def subscribe(self, after: int = 0) -> AsyncIterator[tuple[str | None, str, Any]]:
        """`(id, event, data)` of the run's events after id `after`, then new ones until it ends.

        A reader so slow that the events it has yet to read were dropped gets an `error`
        event saying so and stops, rather than a stream with a silent gap.
        """
        sent = after
        while True:
            self.changed.clear()
            while sent < self.emitted:
                first = self.first_kept
                if sent + 1 < first:
                    message = f"events {sent + 1}-{first - 1} of this run are no longer kept"
                    yield None, "error", {"error": "StreamGap", "message": message}
                    return
                event, data = self.events[sent + 1 - first]
                sent += 1
                yield str(sent), event, data
            if self.done.is_set():
                return
            await self.changed.wait()
