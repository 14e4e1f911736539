"""Runs executed in this process: one run per thread at a time (a lock per thread), at most
`max_in_flight` at once, each an asyncio task streamed from its own event buffer.

The embedded API runs its runs here (and picks up, at start-up, the ones a stopped process
left); each `keel worker` runs the queue's jobs here (`execute_job`, under the thread fence).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog

from keel.observability.metrics import set_queue_depth
from keel.observability.redact import redact
from keel.server.encode import jsonable
from keel.server.errors import Unavailable
from keel.server.executors.runner import RunRunner, Superseded
from keel.server.handles import RunHandle
from keel.server.run_job import RunJob
from keel.server.store import ACTIVE_RUN_STATUSES

__all__ = ["CANCEL_WAIT_S", "InProcessExecutor"]

log = structlog.get_logger("keel.server.runs")

CANCEL_WAIT_S = 30.0
"""How long a request that cancels a run (interrupt, rollback, thread delete) waits for it
to stop before answering 503."""
KEEP_ENDED_S = 60.0
"""How long an ended run's handle stays (for joins and stream reconnects)."""


class InProcessExecutor:
    """Executes runs as tasks of this process's event loop."""

    remote = False

    def __init__(
        self,
        runner: RunRunner,
        *,
        max_in_flight: int,
        fence: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.runner = runner
        self.fence = fence or (lambda thread_id: contextlib.nullcontext())
        """Held while a worker executes a thread's run: no two processes run one thread."""
        self.handles: dict[str, RunHandle] = {}
        self._live: dict[str, RunHandle] = {}
        """The handles whose run has not ended: what admission and thread checks scan."""
        self._thread_locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self.running = 0

    # what is here ----------------------------------------------------------------------

    def live(self, thread_id: str) -> list[RunHandle]:
        return [
            h
            for h in self._live.values()
            if h.record.thread_id == thread_id and not h.done.is_set()
        ]

    async def active(self, thread_id: str) -> list[str]:
        return [h.run_id for h in self.live(thread_id)]

    @property
    def queued(self) -> int:
        return sum(1 for h in self._live.values() if h.status == "pending")

    async def pending(self) -> int:
        return self.queued

    def _track(self, handle: RunHandle) -> None:
        self.handles[handle.run_id] = handle
        self._live[handle.run_id] = handle

    # executing -------------------------------------------------------------------------

    async def submit(self, job: RunJob, handle: RunHandle, graph_input: Any) -> None:
        self._track(handle)
        set_queue_depth("runs", self.queued)
        handle.task = asyncio.create_task(
            self._execute(job, handle, graph_input, delay=job.body.after_seconds or 0),
            name=f"keel-run-{job.run_id}",
        )

    async def execute_job(self, run_id: str, thread_id: str | None = None) -> None:
        """A worker's share: run (or continue) the queued run `run_id` to its end.

        `thread_id` is the job's lock when the queue knows it (saves a read).
        """
        store = self.runner.store
        if thread_id is None:
            found = await store.get_run_any(run_id)
            if found is None:
                return
            thread_id = found.thread_id
        async with self.fence(thread_id):
            record = await store.get_run_any(run_id)  # as it is now that we hold the thread
            if record is None or record.status not in ACTIVE_RUN_STATUSES:
                return  # cancelled before it started, deleted, or already done
            job = RunJob.of(record)
            planned = await self.runner.plan(job)
            if planned is None:
                return
            handle, graph_input = planned
            self._track(handle)
            handle.task = asyncio.current_task()
            await self._execute(job, handle, graph_input)

    async def recover(self) -> int:
        """Restart runs a stopped process left pending or running, from their checkpoints.

        A run whose input already reached the thread (the state carries its run id)
        continues from the last checkpoint, or is marked done if the graph had finished;
        any other run starts from its input.
        """
        count = 0
        for record in await self.runner.store.runs_to_recover():
            job = RunJob.of(record)
            planned = await self.runner.plan(job)
            if planned is None:
                continue
            handle, graph_input = planned
            self._track(handle)
            handle.task = asyncio.create_task(
                self._execute(job, handle, graph_input, delay=job.body.after_seconds or 0),
                name=f"keel-run-{record.run_id}",
            )
            count += 1
        return count

    async def _execute(
        self, job: RunJob, handle: RunHandle, graph_input: Any, *, delay: float = 0
    ) -> None:
        record = handle.record
        runner = self.runner
        try:
            if delay:
                await asyncio.sleep(delay)
            lock = self._thread_locks.setdefault(record.thread_id, asyncio.Lock())
            async with lock, self._slots:
                self.running += 1
                try:
                    set_queue_depth("runs", self.queued)
                    status = await runner.run(handle, graph_input, job.body)
                    await runner.finish(handle, status, alone=self._alone(handle))
                finally:
                    self.running -= 1
        except Superseded:  # cancelled before it started here: the record says so already
            current = await runner.store.get_run_any(record.run_id)
            handle.status = current.status if current is not None else "interrupted"
            await runner.emit(handle, "end", {"run_id": record.run_id, "status": handle.status})
        except asyncio.CancelledError:
            if handle.cancel_reason is None and runner.publish:
                current = await asyncio.shield(runner.store.get_run_any(record.run_id))
                if current is not None and current.status == "interrupted":
                    handle.cancel_reason = current.error or "cancelled"
            if handle.cancel_reason is None:  # the process is stopping: resume at next start
                handle.status = "pending"
                with contextlib.suppress(Exception):  # unless it ended meanwhile
                    await asyncio.shield(
                        runner.store.set_run_status(
                            record.run_id, "pending", only_from=ACTIVE_RUN_STATUSES
                        )
                    )
                raise
            await runner.finish(
                handle, "interrupted", error=handle.cancel_reason, alone=self._alone(handle)
            )
        except Exception as exc:
            log.bind(run_id=record.run_id, thread_id=record.thread_id).exception("run.failed")
            message = redact(str(exc))  # clients and webhooks get it: secrets masked
            await runner.emit(handle, "error", {"error": type(exc).__name__, "message": message})
            await runner.finish(
                handle, "error", error=f"{type(exc).__name__}: {message}", alone=self._alone(handle)
            )
        finally:
            handle.done.set()
            handle.changed.set()
            self._live.pop(record.run_id, None)
            if not self.live(record.thread_id):
                self._thread_locks.pop(record.thread_id, None)
            if job.delete_after and handle.status != "pending":
                await runner.drop_thread(record.thread_id, record.tenant_id)
            asyncio.get_running_loop().call_later(
                KEEP_ENDED_S, self.handles.pop, record.run_id, None
            )

    def _alone(self, handle: RunHandle) -> bool:
        return not [h for h in self.live(handle.record.thread_id) if h is not handle]

    # waiting, streaming, stopping --------------------------------------------------------

    async def cancel(self, run_id: str, thread_id: str, *, reason: str, wait: bool) -> bool:
        handle = self.handles.get(run_id)
        if handle is None or handle.done.is_set():
            return False
        await cancel_handle(handle, reason=reason, wait=wait)
        return True

    async def stopped(self, run_id: str, thread_id: str) -> bool:
        handle = self.handles.get(run_id)
        return handle is None or handle.done.is_set()

    async def wait(self, handle: RunHandle) -> dict[str, Any]:
        await handle.done.wait()
        if handle.result:
            result: dict[str, Any] = jsonable(handle.result)
            return result
        return await self.runner.thread_values(handle.record.thread_id)

    async def stream(
        self, handle: RunHandle, after: str | None = None
    ) -> AsyncIterator[tuple[str | None, str, Any]]:
        """From the run's buffer: ids `1`, `2`, …; `after` a checked `Last-Event-ID`."""
        async for item in handle.subscribe(int(after or 0)):
            yield item

    async def close(self) -> None:
        """Running runs go back to pending and resume at the next start."""
        tasks = [
            h.task
            for h in self.handles.values()
            if h.task and not h.task.done() and h.task is not asyncio.current_task()
        ]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def cancel_handle(handle: RunHandle, *, reason: str = "cancelled", wait: bool) -> None:
    """Cancel a run of this process; `wait`: until it stopped (503 after `CANCEL_WAIT_S`)."""
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
