"""Runs executed by `keel worker`s: the API defers each run to the procrastinate queue and
follows it through the store (its status) and Redis (its stream events), when configured.
Without Redis a stream is the run's outcome once it ended: metadata `0-0`, values `0-1`,
end `0-2`. When Redis goes away mid-wait or mid-stream, the client still gets the run's real
outcome: waiting falls back to polling the run record, a stream ends with the run's final
values (or error) and `end` (those two without an id: Redis gave none)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from keel.server.errors import Unavailable
from keel.server.events import EventsUnavailable, RedisEvents
from keel.server.executors.runner import END_VALUES, RunRunner
from keel.server.handles import RunHandle
from keel.server.queue import RunQueue
from keel.server.run_job import RunJob
from keel.server.store import ACTIVE_RUN_STATUSES, RunRecord

__all__ = ["FIRST_REMOTE_ID", "QueueExecutor"]

log = structlog.get_logger("keel.server.runs")

FIRST_REMOTE_ID = "0-0"
"""The id of the `metadata` event the API sends first for a run on a worker."""


class QueueExecutor:
    """Defers runs to workers, and waits for, streams and cancels them from the API."""

    remote = True

    def __init__(self, runner: RunRunner, queue: RunQueue, events: RedisEvents | None) -> None:
        self.runner = runner
        self.store = runner.store
        self.queue = queue
        self.events = events
        self.handles: dict[str, RunHandle] = {}
        """Always empty: no run executes in the API process."""

    async def active(self, thread_id: str) -> list[str]:
        return [r.run_id for r in await self.store.active_runs(thread_id)]

    async def pending(self) -> int:
        return await self.store.count_runs(["pending"])

    async def submit(self, job: RunJob, handle: RunHandle, graph_input: Any) -> None:
        """Queue the run; if the queue refuses, the run is an `error`, not pending forever."""
        handle.remote = True
        try:
            await self.queue.defer(
                job.run_id, job.thread_id, after_seconds=job.body.after_seconds or 0
            )
        except Exception as exc:
            log.warning("run.enqueue_failed", run_id=job.run_id, error=str(exc)[:200])
            message = f"the run could not be queued ({type(exc).__name__}); retry shortly"
            with contextlib.suppress(Exception):
                await self.store.set_run_status(job.run_id, "error", error=message)
            raise Unavailable(message, headers={"Retry-After": "2"}) from exc

    async def cancel(self, run_id: str, thread_id: str, *, reason: str, wait: bool) -> bool:
        record = await self.store.get_run_any(run_id)
        if record is None:
            return False
        # compare and set: a run that just ended (or just started) is not overwritten
        was_pending = await self.store.set_run_status(
            run_id, "interrupted", error=reason, only_from=("pending",)
        )
        if not was_pending and not await self.store.set_run_status(
            run_id, "interrupted", error=reason, only_from=("running",)
        ):
            return False  # it had ended: the cancel lost, cleanly
        await self.queue.cancel(run_id, thread_id)
        if was_pending:  # no worker will tell: say it here
            await self.store.update_thread(thread_id, status="idle")
            if self.events is not None:
                await self.events.publish(
                    run_id, "end", {"run_id": run_id, "status": "interrupted"}
                )
            await self.runner.notify(RunJob.of(record), "interrupted", error=reason)
        return True

    async def stopped(self, run_id: str, thread_id: str) -> bool:
        return await self.queue.wait_stopped(run_id, thread_id)

    async def wait(self, handle: RunHandle) -> dict[str, Any]:
        try:
            end: dict[str, Any] = {}
            if self.events is not None:
                try:
                    async for _id, event, data in self.events.read(
                        handle.run_id, ended=lambda: self._ended(handle.run_id)
                    ):
                        if event == "end":
                            end = data if isinstance(data, dict) else {}
                            break
                except EventsUnavailable as exc:  # the run record tells how it ended
                    log.warning("run.events_unavailable", run_id=handle.run_id, error=str(exc))
            if end.get("status") in (None, "error"):  # the record says how (and why) it ended
                record = await self._until_done(handle.run_id)
                if record is not None and record.status == "error":
                    return {"__error__": {"error": "RunError", "message": record.error or ""}}
            if isinstance(end.get(END_VALUES), dict):
                values: dict[str, Any] = end[END_VALUES]
                return values
            return await self.runner.thread_values(handle.record.thread_id)
        finally:
            await self._drop_temporary(handle)

    async def stream(
        self, handle: RunHandle, after: str | None = None
    ) -> AsyncIterator[tuple[str | None, str, Any]]:
        """Redis entry ids (`0-0` is the metadata event the API adds); without Redis,
        `0-0`, `0-1`, `0-2`. `after`: a checked `Last-Event-ID`."""
        try:
            if after is None:
                yield FIRST_REMOTE_ID, "metadata", {"run_id": handle.run_id, "attempt": 1}
            if self.events is not None:
                async for item in self._redis_stream(handle, after):
                    yield item
                return
            seen = int((after or "0-0").partition("-")[2])
            for n, (event, data) in enumerate(await self._outcome(handle), start=1):
                if n > seen:
                    yield f"0-{n}", event, data
        finally:
            await self._drop_temporary(handle)

    async def _outcome(self, handle: RunHandle) -> list[tuple[str, Any]]:
        """Once the run ended: its final values (or error) and its `end` event."""
        record = await self._until_done(handle.run_id)
        status = record.status if record else "error"
        outcome: tuple[str, Any]
        if status == "error":
            message = record.error if record else "the run is gone"
            outcome = "error", {"error": "RunError", "message": message}
        else:
            outcome = "values", await self.runner.thread_values(handle.record.thread_id)
        return [outcome, ("end", {"run_id": handle.run_id, "status": status})]

    async def _redis_stream(
        self, handle: RunHandle, after: str | None
    ) -> AsyncIterator[tuple[str | None, str, Any]]:
        assert self.events is not None
        ended = False
        try:
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
        except EventsUnavailable as exc:
            log.warning("run.events_unavailable", run_id=handle.run_id, error=str(exc))
            for event, data in await self._outcome(handle):
                yield None, event, data
            return
        if not ended:
            record = await self.store.get_run_any(handle.run_id)
            status = record.status if record else "error"
            yield None, "end", {"run_id": handle.run_id, "status": status}

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
        """A stateless run's thread goes once its caller has the result."""
        if handle.temporary:
            handle.temporary = False
            await self.runner.drop_thread(handle.record.thread_id, handle.record.tenant_id)

    async def close(self) -> None:
        return None
