"""Executing runs: one run per thread at a time, streamed as it goes.

Embedded, `RunManager` runs them in this process under a per-thread lock and a global
in-flight cap; runs a stopped process left pending or running are picked up again at
start-up from their last checkpoint. Distributed, the API's manager defers each run to
the procrastinate queue and `keel worker`s' managers execute them (`execute_job`),
publishing their stream events to Redis. Every status change is recorded in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from langgraph.types import Command

from keel.config import ServiceSettings
from keel.nodes import AgentContext
from keel.observability.metrics import set_queue_depth
from keel.runtime import Agent
from keel.runtime.driver import Segment
from keel.runtime.durable import unfinished
from keel.server.admission import Admission
from keel.server.auth import Principal
from keel.server.encode import interrupt_json, jsonable
from keel.server.errors import Conflict, Unavailable, Unprocessable
from keel.server.events import RedisEvents
from keel.server.handles import ASSISTANT_ID, GRAPH_ID, RunHandle, question_from
from keel.server.queue import RunQueue
from keel.server.schemas import RunCreate
from keel.server.store import (
    ACTIVE_RUN_STATUSES,
    RunRecord,
    Store,
    ThreadRecord,
    now,
    through_outage,
)
from keel.server.webhooks import (
    WebhookPolicy,
    WebhookSender,
    check_webhook,
    webhook_payload,
)

CANCEL_WAIT_S = 30.0
"""How long a request that cancels a run (interrupt, rollback, thread delete) waits for it
to stop before answering 503."""

__all__ = ["ASSISTANT_ID", "GRAPH_ID", "Principal", "RunHandle", "RunManager", "question_from"]

log = structlog.get_logger("keel.server.runs")

CONTROL_EVENTS = ("metadata", "end", "error")
"""Events every run reports, streamed or not."""
FIRST_REMOTE_ID = "0-0"
"""The id of the `metadata` event the API sends first for a run on a worker."""
END_VALUES = "values"
"""A worker's `end` event carries the run's final values under this key, so the API answers
`wait` / `join` without reading the thread's checkpoint again; streams drop it."""


class RunManager:
    """Admits, executes (here or through the queue), cancels and recovers runs."""

    def __init__(
        self,
        agent: Agent,
        store: Store,
        settings: ServiceSettings,
        *,
        context_for: Callable[[Principal], AgentContext] | None = None,
        admission: Admission | None = None,
        queue: RunQueue | None = None,
        events: RedisEvents | None = None,
        worker: bool = False,
        fence: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.agent = agent
        self.store = store
        self.settings = settings
        self.context_for = context_for or (lambda principal: agent.context)
        self.admission = admission
        self.queue = queue
        """Set in the API of a distributed deployment: runs go to `keel worker`s."""
        self.events = events
        self.worker = worker
        """Set in a `keel worker`: events are published, aborts are cancellations."""
        self.fence = fence or (lambda thread_id: contextlib.nullcontext())
        """Held while a worker executes a thread's run: no two processes run one thread."""
        self.webhooks = webhooks or WebhookSender(WebhookPolicy.of(settings))
        """Posts a run's webhook when the run ends in this process; drained by `close()`."""
        self.handles: dict[str, RunHandle] = {}
        """Runs of this process, kept a minute after they end (joins, cancels, streams)."""
        self._live: dict[str, RunHandle] = {}
        """The handles whose run has not ended: what admission and thread checks scan."""
        self._thread_locks: dict[str, asyncio.Lock] = {}
        self._admit_locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._running = 0
        self.outage_s = agent.settings.limits.run_timeout_s
        """How long run-status writes wait out a database outage before giving up."""

    async def _set_status(self, run_id: str, status: str, **changes: Any) -> None:
        """Record a run's status, waiting out a database outage shorter than a run may
        last: an accepted run is not failed by a Postgres restart."""
        await through_outage(
            lambda: self.store.set_run_status(run_id, status, **changes),
            within_s=self.outage_s,
        )

    # admission -------------------------------------------------------------------------

    def _active(self, thread_id: str) -> list[RunHandle]:
        return [
            h
            for h in self._live.values()
            if h.record.thread_id == thread_id and not h.done.is_set()
        ]

    def _track(self, handle: RunHandle) -> None:
        self.handles[handle.run_id] = handle
        self._live[handle.run_id] = handle

    @property
    def queued(self) -> int:
        return sum(1 for h in self._live.values() if h.status == "pending")

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
        background: bool = False,
        streamed: bool = False,
        fresh: bool = False,
    ) -> RunHandle:
        """Admit a run on `thread` and start it (here, or on a worker through the queue).

        `fresh`: the thread was created for this run, so it has no other runs to look up.
        """
        lock = self._admit_locks.setdefault(thread.thread_id, asyncio.Lock())
        async with lock:
            if self.queue is not None:
                active_ids = (
                    []
                    if fresh
                    else [r.run_id for r in await self.store.active_runs(thread.thread_id)]
                )
                queued = (
                    await self.store.count_runs(["pending"]) if self.admission is not None else 0
                )
            else:
                active_ids = [h.run_id for h in self._active(thread.thread_id)]
                queued = self.queued
            if active_ids and body.multitask_strategy == "reject":
                raise Conflict(
                    f"thread {thread.thread_id} is busy with run {active_ids[0]} "
                    "(multitask_strategy 'reject')"
                )
            if self.admission is not None:
                await self.admission.admit(principal.tenant_id, queued)
            if active_ids and body.multitask_strategy == "interrupt":
                for run_id in active_ids:
                    await self.cancel_run(
                        run_id, thread.thread_id, reason="interrupted by a newer run", wait=True
                    )
            if active_ids and body.multitask_strategy == "rollback":
                await self._rollback(thread.thread_id, active_ids)
            run_id = str(uuid.uuid4())
            graph_input = await self._graph_input(thread.thread_id, body, principal, run_id)
            at = now()
            kwargs = {**body.model_dump(mode="json", exclude_none=True), "role": principal.role}
            if self.queue is not None and temporary and background:
                kwargs["delete_after"] = True
            if streamed:
                kwargs["stream"] = True
            record = RunRecord(
                run_id=run_id,
                thread_id=thread.thread_id,
                tenant_id=principal.tenant_id,
                assistant_id=ASSISTANT_ID,
                status="pending",
                multitask_strategy=body.multitask_strategy,
                metadata=body.metadata,
                kwargs=kwargs,
                created_at=at,
                updated_at=at,
            )
            await self.store.create_run(record)
            handle = RunHandle(
                record=record, modes=body.modes, keep=self.settings.stream_buffer_events
            )
            handle.emit("metadata", {"run_id": record.run_id, "attempt": 1})
            if self.queue is not None:
                handle.remote = True
                handle.temporary = temporary and not background
                await self._defer(record, after_seconds=body.after_seconds or 0)
                return handle
            self._track(handle)
            set_queue_depth("runs", self.queued)
            handle.task = asyncio.create_task(
                self._execute(
                    handle, graph_input, body, self.context_for(principal), temporary=temporary
                ),
                name=f"keel-run-{record.run_id}",
            )
        return handle

    async def _defer(self, record: RunRecord, *, after_seconds: float) -> None:
        """Queue the run; if the queue refuses, the run is an `error`, not pending forever."""
        assert self.queue is not None
        try:
            await self.queue.defer(record.run_id, record.thread_id, after_seconds=after_seconds)
        except Exception as exc:
            log.warning("run.enqueue_failed", run_id=record.run_id, error=str(exc)[:200])
            message = f"the run could not be queued ({type(exc).__name__}); retry shortly"
            with contextlib.suppress(Exception):
                await self.store.set_run_status(record.run_id, "error", error=message)
            raise Unavailable(message, headers={"Retry-After": "2"}) from exc

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
        snapshot = await self.agent.asnapshot(thread_id)
        if not snapshot.next:
            raise Unprocessable(
                f"thread {thread_id} has nothing to continue: give 'input' (or 'command')"
            )
        return None

    # execution -------------------------------------------------------------------------

    async def _emit(
        self, handle: RunHandle, event: str, data: Any, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Tell the run's streams; `extra` fields go only to other processes (see `END_VALUES`)."""
        if not handle.modes and event not in CONTROL_EVENTS:
            return  # nobody streams this run: only its outcome is told
        handle.emit(event, data)
        if self.worker and self.events is not None:
            await self.events.publish(handle.run_id, event, {**data, **extra} if extra else data)

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
            if body.after_seconds and not self.worker:
                await asyncio.sleep(body.after_seconds)
            lock = self._thread_locks.setdefault(record.thread_id, asyncio.Lock())
            async with lock, self._slots:
                self._running += 1
                try:
                    await self._run_graph(handle, graph_input, body, context)
                finally:
                    self._running -= 1
        except asyncio.CancelledError:
            if handle.cancel_reason is None and self.worker:
                current = await asyncio.shield(self.store.get_run_any(record.run_id))
                if current is not None and current.status == "interrupted":
                    handle.cancel_reason = current.error or "cancelled"
            if handle.cancel_reason is None:  # the process is stopping: resume at next start
                handle.status = "pending"
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.set_run_status(record.run_id, "pending"))
                raise
            await self._finish(handle, "interrupted", error=handle.cancel_reason)
        except Exception as exc:
            bound.exception("run.failed")
            await self._emit(handle, "error", {"error": type(exc).__name__, "message": str(exc)})
            await self._finish(handle, "error", error=f"{type(exc).__name__}: {exc}")
        finally:
            handle.done.set()
            handle.changed.set()
            self._live.pop(record.run_id, None)
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
        await self._set_status(
            record.run_id, "running", attempt=record.attempt + 1, thread=(record.thread_id, "busy")
        )
        segment = Segment(
            record.thread_id,
            graph_input,
            run_id=record.run_id,
            tenant=record.tenant_id,
            stream_modes=["messages" if m == "messages-tuple" else m for m in handle.modes],
            checkpoint_id=body.checkpoint_ref,
            durability=body.durability,
            interrupt_before=body.interrupt_before,
            interrupt_after=body.interrupt_after,
            context=context,
        )

        async def send(mode: str, chunk: Any) -> None:
            await self._emit(handle, mode, list(chunk) if mode == "messages" else chunk)

        snapshot = (await self.agent.drive(segment, send)).snapshot
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
        alone = not [h for h in self._active(record.thread_id) if h is not handle]
        await asyncio.shield(
            self._set_status(
                record.run_id,
                status,
                error=error,
                thread=(record.thread_id, thread_status) if alone else None,
            )
        )
        values = handle.result if status != "error" and self.worker else None
        await self._emit(
            handle,
            "end",
            {"run_id": record.run_id, "status": status},
            extra={END_VALUES: jsonable(values)} if values else None,
        )
        await self._notify(
            record, status, values=handle.result if status != "error" else None, error=error
        )

    async def _notify(
        self,
        record: RunRecord,
        status: str,
        *,
        values: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Post the ended run's webhook, if it asked for one (delivered in the background).

        Without `values` the thread's state is read here, before a temporary thread goes.
        The URL is checked again against this process's allowed hosts.
        """
        url = record.kwargs.get("webhook")
        if not isinstance(url, str) or not url:
            return
        try:
            check_webhook(url, self.webhooks.policy)
        except Unprocessable as exc:
            log.warning("webhook.refused", run_id=record.run_id, reason=exc.message)
            return
        try:
            final = jsonable(values) if values else await self.thread_values(record.thread_id)
        except Exception as exc:
            log.warning("webhook.values_unread", run_id=record.run_id, error=type(exc).__name__)
            final = None
        payload = webhook_payload(record, status, values=final, error=error)
        self.webhooks.send(url, payload, run_id=record.run_id)

    async def execute_job(self, run_id: str, thread_id: str | None = None) -> None:
        """A worker's share: run (or continue) the queued run `run_id` to its end.

        `thread_id` is the job's lock when the queue knows it (saves a read).
        """
        if thread_id is None:
            found = await self.store.get_run_any(run_id)
            if found is None:
                return
            thread_id = found.thread_id
        async with self.fence(thread_id):
            record = await self.store.get_run_any(run_id)  # as it is now that we hold the thread
            if record is None or record.status not in ACTIVE_RUN_STATUSES:
                return  # cancelled before it started, deleted, or already done
            planned = await self._plan(record)
            if planned is None:
                return
            handle, graph_input, body, principal = planned
            self._track(handle)
            handle.task = asyncio.current_task()
            await self._execute(
                handle,
                graph_input,
                body,
                self.context_for(principal),
                temporary=bool(record.kwargs.get("delete_after")),
            )

    async def _published_end(self, run_id: str, status: str) -> None:
        """Tell other processes a run ended that never got a handle here."""
        if self.worker and self.events is not None:
            await self.events.publish(run_id, "end", {"run_id": run_id, "status": status})

    async def _plan(self, record: RunRecord) -> tuple[RunHandle, Any, RunCreate, Principal] | None:
        """How to (re)start a run: from its input, or from the checkpoint it reached."""
        body = RunCreate.model_validate(record.kwargs)
        principal = Principal(record.tenant_id, str(record.kwargs.get("role", "admin")))
        started = False
        if record.attempt:  # an attempt began: its input may be in the thread's state
            snapshot = await self.agent.asnapshot(record.thread_id)
            started = (snapshot.values or {}).get("run_id") == record.run_id
        if started and not unfinished(snapshot):  # `next` alone misses a half-saved step
            await self._set_status(record.run_id, "success", thread=(record.thread_id, "idle"))
            await self._published_end(record.run_id, "success")
            await self._notify(record, "success")
            return None
        try:
            graph_input: Any = (
                None
                if started
                else await self._graph_input(record.thread_id, body, principal, record.run_id)
            )
        except Unprocessable as exc:
            await self._set_status(record.run_id, "error", error=exc.message)
            await self._published_end(record.run_id, "error")
            await self._notify(record, "error", error=exc.message)
            return None
        streamed = bool(record.kwargs.get("stream") or body.stream_resumable) or not self.worker
        handle = RunHandle(
            record=record,
            modes=body.modes if streamed else [],
            keep=self.settings.stream_buffer_events,
        )
        handle.emit("metadata", {"run_id": record.run_id, "attempt": record.attempt + 1})
        return handle, graph_input, body, principal

    # results and streams ---------------------------------------------------------------

    async def wait_result(self, handle: RunHandle) -> dict[str, Any]:
        """The run's final values (with `__interrupt__` / `__error__`), once it has ended."""
        if not handle.remote:
            await handle.done.wait()
            if handle.result:
                result: dict[str, Any] = jsonable(handle.result)
                return result
            return await self.thread_values(handle.record.thread_id)
        try:
            end: dict[str, Any] = {}
            if self.events is not None:
                async for _id, event, data in self.events.read(
                    handle.run_id, ended=lambda: self._ended(handle.run_id)
                ):
                    if event == "end":
                        end = data if isinstance(data, dict) else {}
                        break
            if end.get("status") in (None, "error"):  # the record says how (and why) it ended
                record = await self._until_done(handle.run_id)
                if record is not None and record.status == "error":
                    return {"__error__": {"error": "RunError", "message": record.error or ""}}
            if isinstance(end.get(END_VALUES), dict):
                values: dict[str, Any] = end[END_VALUES]
                return values
            return await self.thread_values(handle.record.thread_id)
        finally:
            await self._drop_temporary(handle)

    async def thread_values(self, thread_id: str) -> dict[str, Any]:
        snapshot = await self.agent.asnapshot(thread_id)
        values: dict[str, Any] = jsonable(snapshot.values or {})
        if snapshot.interrupts:
            values["__interrupt__"] = [interrupt_json(i) for i in snapshot.interrupts]
        return values

    async def stream(
        self, handle: RunHandle, after: str | None = None
    ) -> AsyncIterator[tuple[str | None, str, Any]]:
        """The run's `(id, event, data)`: from this process's buffer, or the worker's stream.

        `after`: a checked `Last-Event-ID` (see `resume.resume_after`); only later events.
        Ids are `1`, `2`, … in-process and Redis entry ids from workers (`0-0` is the
        metadata event the API adds); without Redis, `0-0`, `0-1`, `0-2`.
        """
        if not handle.remote:
            async for item in handle.subscribe(int(after or 0)):
                yield item
            return
        try:
            if after is None:
                yield FIRST_REMOTE_ID, "metadata", {"run_id": handle.run_id, "attempt": 1}
            if self.events is not None:
                ended = False
                async for event_id, event, data in self.events.read(
                    handle.run_id,
                    after=after or FIRST_REMOTE_ID,
                    ended=lambda: self._ended(handle.run_id),
                ):
                    if event == "end":
                        ended = True
                        if isinstance(data, dict):
                            data = {k: v for k, v in data.items() if k != END_VALUES}
                    yield event_id, event, data
                if not ended:
                    record = await self.store.get_run_any(handle.run_id)
                    status = record.status if record else "error"
                    yield None, "end", {"run_id": handle.run_id, "status": status}
                return
            record = await self._until_done(handle.run_id)
            status = record.status if record else "error"
            outcome: tuple[str, Any]
            if status == "error":
                message = record.error if record else "the run is gone"
                outcome = "error", {"error": "RunError", "message": message}
            else:
                outcome = "values", await self.thread_values(handle.record.thread_id)
            end = {"run_id": handle.run_id, "status": status}
            seen = int((after or "0-0").partition("-")[2])
            for n, (event, data) in enumerate([outcome, ("end", end)], start=1):
                if n > seen:
                    yield f"0-{n}", event, data
        finally:
            await self._drop_temporary(handle)

    async def _ended(self, run_id: str) -> bool:
        record = await self.store.get_run_any(run_id)
        return record is None or record.status not in ACTIVE_RUN_STATUSES

    async def _until_done(self, run_id: str) -> RunRecord | None:
        delay = 0.05
        while True:
            record = await self.store.get_run_any(run_id)
            if record is None or record.status not in ACTIVE_RUN_STATUSES:
                return record
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def _drop_temporary(self, handle: RunHandle) -> None:
        if handle.temporary:
            handle.temporary = False
            with contextlib.suppress(Exception):
                await self.delete_thread_data(handle.record.thread_id)
                await self.store.delete_thread(handle.record.thread_id, handle.record.tenant_id)

    # control ---------------------------------------------------------------------------

    async def cancel(self, handle: RunHandle, *, reason: str = "cancelled", wait: bool) -> None:
        if handle.done.is_set() or handle.task is None:
            return
        handle.cancel_reason = reason
        handle.task.cancel()
        if not wait:
            return
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(handle.done.wait()), timeout=CANCEL_WAIT_S)
        except TimeoutError as exc:
            raise Unavailable(
                f"run {handle.run_id} did not stop within {CANCEL_WAIT_S:g} s; retry shortly",
                headers={"Retry-After": "2"},
            ) from exc

    async def cancel_run(self, run_id: str, thread_id: str, *, reason: str, wait: bool) -> bool:
        """Cancel a pending or running run wherever it executes; False if it had ended."""
        handle = self.handles.get(run_id)
        if handle is not None:
            if handle.done.is_set():
                return False
            await self.cancel(handle, reason=reason, wait=wait)
            return True
        if self.queue is None:
            return False
        record = await self.store.get_run_any(run_id)
        if record is None or record.status not in ACTIVE_RUN_STATUSES:
            return False
        await self.store.set_run_status(run_id, "interrupted", error=reason)
        await self.queue.cancel(run_id, thread_id)
        if record.status == "pending":  # no worker will tell: say it here
            await self.store.update_thread(thread_id, status="idle")
            if self.events is not None:
                await self.events.publish(
                    run_id, "end", {"run_id": run_id, "status": "interrupted"}
                )
            await self._notify(record, "interrupted", error=reason)
        return True

    async def _rollback(self, thread_id: str, run_ids: list[str]) -> None:
        """Stop these runs, delete them and the checkpoints they wrote: the thread is back
        where it was before they started. Their journal rows stay (the effects happened)."""
        for run_id in run_ids:
            # an in-process run that does not stop: `cancel` answers 503 itself
            await self.cancel_run(run_id, thread_id, reason="rolled back by a newer run", wait=True)
            if self.queue is not None and not await self.queue.wait_stopped(run_id, thread_id):
                raise Unavailable(
                    f"run {run_id} did not stop in time to be rolled back; retry shortly",
                    headers={"Retry-After": "2"},
                )
        await self.agent.adelete_runs(thread_id, run_ids)
        for run_id in run_ids:
            await self.store.delete_run(run_id)
        await self.store.update_thread(thread_id, status="idle")

    async def delete_thread_data(self, thread_id: str) -> None:
        """Cancel the thread's runs, delete its checkpoints and its journal rows."""
        for h in self._active(thread_id):
            await self.cancel(h, reason="thread deleted", wait=True)
        if self.queue is not None:
            for r in await self.store.active_runs(thread_id):
                await self.cancel_run(r.run_id, thread_id, reason="thread deleted", wait=False)
        await self.agent.adelete_thread(thread_id)

    async def recover(self) -> int:
        """Restart runs a stopped process left pending or running, from their checkpoints.

        A run whose input already reached the thread (the state carries its run id)
        continues from the last checkpoint, or is marked done if the graph had finished;
        any other run starts from its input.
        """
        count = 0
        for record in await self.store.runs_to_recover():
            planned = await self._plan(record)
            if planned is None:
                continue
            handle, graph_input, body, principal = planned
            self._track(handle)
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
        tasks = [
            h.task
            for h in self.handles.values()
            if h.task and not h.task.done() and h.task is not asyncio.current_task()
        ]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.webhooks.close()
