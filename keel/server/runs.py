"""Admitting runs: one run per thread at a time, by the request's multitask strategy, then
handed to an executor (see `keel.server.executors`).

Embedded, runs execute in this process (`InProcessExecutor`); runs a stopped process left
pending or running are picked up again at start-up from their last checkpoint.
Distributed, the API defers each run to the procrastinate queue (`QueueExecutor`) and `keel
worker`s execute them (`execute_job`), publishing their stream events to Redis. Every
status change is recorded in the store.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from keel.config import ServiceSettings
from keel.server.admission import Admission
from keel.server.auth import Principal
from keel.server.errors import Conflict, Unavailable
from keel.server.events import RedisEvents
from keel.server.executors import (
    Executor,
    InProcessExecutor,
    QueueExecutor,
    RunRunner,
    cancel_handle,
)
from keel.server.executors.queued import FIRST_REMOTE_ID
from keel.server.graphs import ServedGraphs, default_assistant_id
from keel.server.handles import ASSISTANT_ID, GRAPH_ID, RunHandle, question_from
from keel.server.queue import RunQueue
from keel.server.run_job import RunJob, stored_kwargs
from keel.server.schemas import RunCreate
from keel.server.served import Applied, ServedGraph
from keel.server.store import (
    RunRecord,
    Store,
    ThreadRecord,
    is_db_outage,
    now,
    through_outage,
)
from keel.server.webhooks import WebhookPolicy, WebhookSender

__all__ = [
    "ASSISTANT_ID",
    "FIRST_REMOTE_ID",
    "GRAPH_ID",
    "Principal",
    "RunHandle",
    "RunManager",
    "question_from",
]


class RunManager:
    """Admits runs and hands them to its executor; cancels, waits for and streams them.

    A thread is named by its key here (`ThreadRecord.key`): every `thread_id` below is one.
    """

    def __init__(
        self,
        graphs: ServedGraphs | Any,
        store: Store,
        settings: ServiceSettings,
        *,
        admission: Admission | None = None,
        queue: RunQueue | None = None,
        events: RedisEvents | None = None,
        worker: bool = False,
        fence: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        """`queue`: the API of a distributed deployment (runs go to `keel worker`s);
        `worker`: a `keel worker` (events are published, `fence` holds a thread's run).
        `graphs`: the served graphs (an `AgentRuntime` alone serves the built-in agent)."""
        if not isinstance(graphs, ServedGraphs):
            graphs = ServedGraphs.of_runtime(graphs, graphs.settings)
        self.graphs = graphs
        self.store = store
        self.settings = settings
        self.admission = admission
        self.queue = queue
        self.events = events
        self.webhooks = webhooks or WebhookSender(WebhookPolicy.of(settings))
        """Posts a run's webhook when the run ends in this process; drained by `close()`."""
        self.runner = RunRunner(
            graphs,
            store,
            settings,
            self.webhooks,
            events=events,
            publish=worker,
            outage_s=graphs.settings.limits.run_timeout_s,
        )
        self.local: InProcessExecutor | None = None
        """The in-process executor (None in the API of a distributed deployment)."""
        self.executor: Executor
        if queue is not None:
            self.executor = QueueExecutor(self.runner, queue, events)
        else:
            self.local = InProcessExecutor(
                self.runner, max_in_flight=settings.max_in_flight, fence=fence
            )
            self.executor = self.local
        self._admit_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def handles(self) -> dict[str, RunHandle]:
        """Runs executing in this process (kept a minute after they end)."""
        return self.executor.handles

    @property
    def queued(self) -> int:
        """Runs of this process waiting for a slot."""
        return self.local.queued if self.local is not None else 0

    @property
    def in_flight(self) -> int:
        return self.local.running if self.local is not None else 0

    # admission -------------------------------------------------------------------------

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
        target: tuple[str, ServedGraph, Applied, str] | None = None,
    ) -> RunHandle:
        """Admit a run on `thread` and hand it to the executor.

        `target`: the run's assistant id, graph, applied config/context and graph id
        (checked by the caller; the built-in agent's default assistant when None).

        `fresh`: the thread was created for this run, so it has no other runs to look up.
        `temporary`: a stateless run's thread, deleted when the run ends (`background`) or
        once its caller has the result.
        """
        thread_id = thread.key
        lock = self._admit_locks.get(thread_id)
        if lock is None:
            lock = self._admit_locks[thread_id] = asyncio.Lock()
        async with lock:
            active_ids = (
                [] if fresh and self.executor.remote else await self.executor.active(thread_id)
            )
            if active_ids and body.multitask_strategy == "reject":
                raise Conflict(
                    f"thread {thread.thread_id} is busy with run {active_ids[0]} "
                    "(multitask_strategy 'reject')"
                )
            if self.admission is not None:
                await self.admission.admit(principal.tenant_id, await self.executor.pending())
            if active_ids and body.multitask_strategy == "interrupt":
                for run_id in active_ids:
                    await self.cancel_run(
                        run_id, thread_id, reason="interrupted by a newer run", wait=True
                    )
            if active_ids and body.multitask_strategy == "rollback":
                await self._rollback(thread_id, active_ids)
            run_id = str(uuid.uuid4())
            if target is None:
                graph_id = self.graphs.default_id
                target = (default_assistant_id(graph_id), self.graphs.default, Applied(), graph_id)
            assistant_id, served, applied, graph_id = target
            bound = await served.bind(applied)
            graph_input = await self.runner.graph_input(
                served, bound, thread_id, body, principal, run_id
            )
            remote = self.executor.remote
            at = now()
            record = RunRecord(
                run_id=run_id,
                thread_id=thread_id,
                tenant_id=principal.tenant_id,
                assistant_id=assistant_id,
                status="pending",
                multitask_strategy=body.multitask_strategy,
                metadata=body.metadata,
                kwargs=stored_kwargs(
                    body,
                    principal.role,
                    delete_after=remote and temporary and background,
                    stream=streamed,
                    assistant={"graph_id": graph_id, **applied.to_json()},
                ),
                created_at=at,
                updated_at=at,
            )
            try:  # the one write: from here the run exists, and is never admitted twice
                await through_outage(
                    lambda: self.store.create_run(record),
                    within_s=self.settings.admission_outage_wait_s,
                )
            except Exception as exc:
                if is_db_outage(exc):
                    raise Unavailable(
                        "the database is not reachable; retry shortly",
                        headers={"Retry-After": "2"},
                    ) from exc
                raise
            job = RunJob(
                record,
                body,
                principal.role,
                # in this process the executor drops the thread; on a worker only in the
                # background (else the API drops it once the caller has the result)
                delete_after=temporary and (background or not remote),
                stream=streamed,
            )
            handle = RunHandle(
                record=record, modes=body.modes, keep=self.settings.stream_buffer_events
            )
            handle.temporary = remote and temporary and not background
            handle.emit("metadata", {"run_id": run_id, "attempt": 1})
            await self.executor.submit(job, handle, graph_input)
        return handle

    async def _rollback(self, thread_id: str, run_ids: list[str]) -> None:
        """Stop these runs, delete them and the checkpoints they wrote: the thread is back
        where it was before they started. Their journal rows stay (the effects happened)."""
        for run_id in run_ids:
            # an in-process run that does not stop: `cancel` answers 503 itself
            await self.cancel_run(run_id, thread_id, reason="rolled back by a newer run", wait=True)
            if not await self.executor.stopped(run_id, thread_id):
                raise Unavailable(
                    f"run {run_id} did not stop in time to be rolled back; retry shortly",
                    headers={"Retry-After": "2"},
                )
        await (await self.runner.served_for(thread_id)).delete_runs(thread_id, run_ids)
        for run_id in run_ids:
            await self.store.delete_run(run_id)
        await self.store.update_thread(thread_id, status="idle")

    # results, streams, control ----------------------------------------------------------

    async def wait_result(self, handle: RunHandle) -> dict[str, Any]:
        """The run's final values (with `__interrupt__` / `__error__`), once it has ended."""
        return await self.executor.wait(handle)

    async def thread_values(self, thread_id: str) -> dict[str, Any]:
        return await self.runner.thread_values(thread_id)

    def stream(
        self, handle: RunHandle, after: str | None = None
    ) -> AsyncIterator[tuple[str | None, str, Any]]:
        """The run's `(id, event, data)` after `after` (a checked `Last-Event-ID`, see
        `resume.resume_after`): `1`, `2`, … in-process, Redis entry ids from workers."""
        return self.executor.stream(handle, after)

    async def cancel(self, handle: RunHandle, *, reason: str = "cancelled", wait: bool) -> None:
        await cancel_handle(handle, reason=reason, wait=wait)

    async def cancel_run(self, run_id: str, thread_id: str, *, reason: str, wait: bool) -> bool:
        """Cancel a pending or running run wherever it executes; False if it had ended."""
        return await self.executor.cancel(run_id, thread_id, reason=reason, wait=wait)

    async def delete_thread_data(self, thread_id: str) -> None:
        """Cancel the thread's runs, delete its checkpoints and its journal rows."""
        for run_id in await self.executor.active(thread_id):
            await self.cancel_run(
                run_id, thread_id, reason="thread deleted", wait=not self.executor.remote
            )
        await (await self.runner.served_for(thread_id)).delete_thread(thread_id)

    async def execute_job(self, run_id: str, thread_id: str | None = None) -> None:
        """A worker's share: run (or continue) the queued run `run_id` to its end."""
        assert self.local is not None, "a worker executes in its own process"
        await self.local.execute_job(run_id, thread_id)

    async def recover(self) -> int:
        """Restart runs a stopped process left pending or running (embedded only)."""
        return await self.local.recover() if self.local is not None else 0

    async def close(self) -> None:
        """Stop executing: running runs go back to pending and resume at the next start."""
        await self.executor.close()
        await self.webhooks.close()
