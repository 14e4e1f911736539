"""Executing runs in the API process: one run per thread at a time, streamed as it goes.

A `RunHandle` buffers a run's stream events so that the request that started it and any
`join` can read them; `RunManager` admits runs (multitask strategy, queue bounds), runs
them under a per-thread lock and a global in-flight cap, and records every status change
in the store. Runs left pending or running by a stopped process are picked up again at
start-up and continue from their last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from langgraph.types import Command

from keel.config import ServiceSettings
from keel.observability.metrics import run_in_flight, set_queue_depth
from keel.service.api.admission import Admission
from keel.service.api.auth import Principal
from keel.service.api.encode import interrupt_json
from keel.service.api.errors import Conflict, Unprocessable
from keel.service.api.schemas import RunCreate
from keel.service.api.store import RunRecord, Store, ThreadRecord, now
from keel.service.runner import Agent
from nodes import AgentContext

__all__ = ["ASSISTANT_ID", "GRAPH_ID", "Principal", "RunHandle", "RunManager", "question_from"]

log = structlog.get_logger("keel.service.runs")

GRAPH_ID = "agent"
ASSISTANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "keel:assistant:agent"))
MAX_BUFFERED_EVENTS = 10_000


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
    events: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    status: str = "pending"
    result: dict[str, Any] = field(default_factory=dict)
    cancel_reason: str | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def emit(self, event: str, data: Any) -> None:
        if len(self.events) < MAX_BUFFERED_EVENTS:
            self.events.append((event, data))
        self.changed.set()

    async def subscribe(self) -> AsyncIterator[tuple[str, Any]]:
        """Every event of the run from the first, then new ones until it ends."""
        sent = 0
        while True:
            self.changed.clear()
            while sent < len(self.events):
                yield self.events[sent]
                sent += 1
            if self.done.is_set():
                return
            await self.changed.wait()


class RunManager:
    """Admits, executes, cancels and recovers runs of one agent graph."""

    def __init__(
        self,
        agent: Agent,
        store: Store,
        settings: ServiceSettings,
        *,
        context_for: Callable[[Principal], AgentContext] | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.agent = agent
        self.store = store
        self.settings = settings
        self.context_for = context_for or (lambda principal: agent.context)
        self.admission = admission
        self.handles: dict[str, RunHandle] = {}
        self._thread_locks: dict[str, asyncio.Lock] = {}
        self._admit_locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._running = 0
        self._closing = False

    # admission -------------------------------------------------------------------------

    def _active(self, thread_id: str) -> list[RunHandle]:
        return [
            h
            for h in self.handles.values()
            if h.record.thread_id == thread_id and not h.done.is_set()
        ]

    @property
    def queued(self) -> int:
        return sum(1 for h in self.handles.values() if h.status == "pending")

    @property
    def in_flight(self) -> int:
        return self._running

    async def start(
        self,
        thread: ThreadRecord,
        principal: Principal,
        body: RunCreate,
        *,
        temporary: bool = False,
    ) -> RunHandle:
        """Admit a run on `thread` and start it in the background."""
        lock = self._admit_locks.setdefault(thread.thread_id, asyncio.Lock())
        async with lock:
            active = self._active(thread.thread_id)
            if active and body.multitask_strategy == "reject":
                raise Conflict(
                    f"thread {thread.thread_id} is busy with run {active[0].run_id} "
                    "(multitask_strategy 'reject')"
                )
            if self.admission is not None:
                await self.admission.admit(principal.tenant_id, self.queued)
            if active and body.multitask_strategy == "interrupt":
                for h in active:
                    await self.cancel(h, reason="interrupted by a newer run", wait=True)
            run_id = str(uuid.uuid4())
            graph_input = await self._graph_input(thread.thread_id, body, principal, run_id)
            at = now()
            record = RunRecord(
                run_id=run_id,
                thread_id=thread.thread_id,
                tenant_id=principal.tenant_id,
                assistant_id=ASSISTANT_ID,
                status="pending",
                multitask_strategy=body.multitask_strategy,
                metadata=body.metadata,
                kwargs={**body.model_dump(mode="json", exclude_none=True), "role": principal.role},
                created_at=at,
                updated_at=at,
            )
            await self.store.create_run(record)
            handle = RunHandle(record=record, modes=body.modes)
            handle.emit("metadata", {"run_id": record.run_id, "attempt": 1})
            self.handles[record.run_id] = handle
            set_queue_depth("runs", self.queued)
            context = self.context_for(principal)
            handle.task = asyncio.create_task(
                self._execute(handle, graph_input, body, context, temporary=temporary),
                name=f"keel-run-{record.run_id}",
            )
        return handle

    async def _graph_input(
        self, thread_id: str, body: RunCreate, principal: Principal, run_id: str
    ) -> Any:
        if body.command is not None:
            c = body.command
            return Command(
                resume=c.resume,
                update=c.update,
                goto=c.goto if c.goto is not None else (),
            )
        if body.input is not None:
            question = question_from(body.input)
            return self.agent.start_state(question, tenant=principal.tenant_id, run_id=run_id)
        snapshot = await self.agent.graph.aget_state(self.agent.config(thread_id))
        if not snapshot.next:
            raise Unprocessable(
                f"thread {thread_id} has nothing to continue: give 'input' (or 'command')"
            )
        return None

    # execution -------------------------------------------------------------------------

    async def _execute(
        self,
        handle: RunHandle,
        graph_input: Any,
        body: RunCreate,
        context: AgentContext,
        *,
        temporary: bool,
    ) -> None:
        record = handle.record
        bound = log.bind(run_id=record.run_id, thread_id=record.thread_id)
        try:
            if body.after_seconds:
                await asyncio.sleep(body.after_seconds)
            lock = self._thread_locks.setdefault(record.thread_id, asyncio.Lock())
            async with lock, self._slots:
                self._running += 1
                run_in_flight(1)
                try:
                    await self._run_graph(handle, graph_input, body, context)
                finally:
                    self._running -= 1
                    run_in_flight(-1)
        except asyncio.CancelledError:
            if handle.cancel_reason is None:  # the process is stopping: resume at next start
                handle.status = "pending"
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.set_run_status(record.run_id, "pending"))
                raise
            await self._finish(handle, "interrupted", error=handle.cancel_reason)
        except Exception as exc:
            bound.exception("run.failed")
            handle.emit("error", {"error": type(exc).__name__, "message": str(exc)})
            await self._finish(handle, "error", error=f"{type(exc).__name__}: {exc}")
        finally:
            handle.done.set()
            handle.changed.set()
            if not self._active(record.thread_id):
                self._thread_locks.pop(record.thread_id, None)
                self._admit_locks.pop(record.thread_id, None)
            if temporary and handle.status != "pending":
                with contextlib.suppress(Exception):
                    await self.delete_thread_data(record.thread_id)
                    await self.store.delete_thread(record.thread_id, record.tenant_id)
            asyncio.get_running_loop().call_later(60, self.handles.pop, record.run_id, None)

    async def _run_graph(
        self, handle: RunHandle, graph_input: Any, body: RunCreate, context: AgentContext
    ) -> None:
        record = handle.record
        handle.status = "running"
        set_queue_depth("runs", self.queued)
        await self.store.set_run_status(record.run_id, "running", attempt=record.attempt + 1)
        await self.store.update_thread(record.thread_id, status="busy")
        config = self.agent.config(record.thread_id)
        config["configurable"]["run_id"] = record.run_id
        if body.checkpoint_ref:
            config["configurable"]["checkpoint_id"] = body.checkpoint_ref
        modes = list(
            dict.fromkeys("messages" if m == "messages-tuple" else m for m in handle.modes)
        )
        async for mode, chunk in self.agent.graph.astream(
            graph_input,
            config,
            context=context,
            stream_mode=modes,  # type: ignore[arg-type]
            durability=body.durability or self.agent.settings.durability,
            interrupt_before=body.interrupt_before,
            interrupt_after=body.interrupt_after,
        ):
            handle.emit(mode, list(chunk) if mode == "messages" else chunk)
        snapshot = await self.agent.graph.aget_state(self.agent.config(record.thread_id))
        values = dict(snapshot.values or {})
        if snapshot.interrupts:
            values["__interrupt__"] = [interrupt_json(i) for i in snapshot.interrupts]
        handle.result = values
        await self._finish(handle, "interrupted" if snapshot.next else "success")

    async def _finish(self, handle: RunHandle, status: str, *, error: str | None = None) -> None:
        handle.status = status
        if status == "error":
            handle.result = {"__error__": {"error": "RunError", "message": error or ""}}
        record = handle.record
        thread_status = {"success": "idle", "error": "error"}.get(status, "idle")
        if status == "interrupted" and handle.cancel_reason is None:
            thread_status = "interrupted"
        await asyncio.shield(self.store.set_run_status(record.run_id, status, error=error))
        if not [h for h in self._active(record.thread_id) if h is not handle]:
            await asyncio.shield(self.store.update_thread(record.thread_id, status=thread_status))
        handle.emit("end", {"run_id": record.run_id, "status": status})

    # control ---------------------------------------------------------------------------

    async def cancel(self, handle: RunHandle, *, reason: str = "cancelled", wait: bool) -> None:
        if handle.done.is_set() or handle.task is None:
            return
        handle.cancel_reason = reason
        handle.task.cancel()
        if wait:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(handle.done.wait()), timeout=30)

    async def delete_thread_data(self, thread_id: str) -> None:
        """Cancel the thread's runs and delete its checkpoints."""
        for h in self._active(thread_id):
            await self.cancel(h, reason="thread deleted", wait=True)
        saver = self.agent.graph.checkpointer
        if saver is not None and not isinstance(saver, bool):
            await saver.adelete_thread(thread_id)

    async def recover(self) -> int:
        """Restart runs a stopped process left pending or running, from their checkpoints.

        A run whose input already reached the thread (the state carries its run id)
        continues from the last checkpoint, or is marked done if the graph had finished;
        any other run starts from its input.
        """
        count = 0
        for record in await self.store.runs_to_recover():
            body = RunCreate.model_validate(record.kwargs)
            principal = Principal(record.tenant_id, str(record.kwargs.get("role", "admin")))
            snapshot = await self.agent.graph.aget_state(self.agent.config(record.thread_id))
            started = (snapshot.values or {}).get("run_id") == record.run_id
            handle = RunHandle(record=record, modes=body.modes)
            if started and not snapshot.next:
                await self.store.set_run_status(record.run_id, "success")
                continue
            try:
                graph_input: Any = (
                    None
                    if started
                    else await self._graph_input(record.thread_id, body, principal, record.run_id)
                )
            except Unprocessable as exc:
                await self.store.set_run_status(record.run_id, "error", error=exc.message)
                continue
            self.handles[record.run_id] = handle
            handle.emit("metadata", {"run_id": record.run_id, "attempt": record.attempt + 1})
            handle.task = asyncio.create_task(
                self._execute(
                    handle, graph_input, body, self.context_for(principal), temporary=False
                ),
                name=f"keel-run-{record.run_id}",
            )
            count += 1
        return count

    async def close(self) -> None:
        """Stop executing: running runs go back to pending and resume at the next start."""
        tasks = [h.task for h in self.handles.values() if h.task and not h.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
