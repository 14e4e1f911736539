"""Executing one run in this process: its input, its graph (a `ServedGraph`: a Keel agent
through its driver, or a plain graph), its stream events, its recorded status and its
webhook. Both executors use it: the in-process one in the API, and the one in each `keel
worker`. Which graph, and with which config and context, the run's record says (what its
assistant and its own request gave at admission)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from langgraph.types import Command

from keel.config import ServiceSettings
from keel.runtime import unfinished
from keel.runtime.driver import Segment
from keel.server.auth import Principal
from keel.server.encode import interrupt_json, jsonable
from keel.server.errors import Unprocessable
from keel.server.events import RedisEvents
from keel.server.graphs import LEGACY_GRAPH_ID, ServedGraphs
from keel.server.handles import RunHandle
from keel.server.run_job import RunJob
from keel.server.schemas import RunCreate
from keel.server.served import Applied, BoundGraph, ServedGraph
from keel.server.store import (
    ACTIVE_RUN_STATUSES,
    RunRecord,
    Store,
    public_thread_id,
    through_outage,
)
from keel.server.webhooks import WebhookSender, check_webhook, webhook_payload

__all__ = ["CONTROL_EVENTS", "END_VALUES", "RunRunner", "Superseded"]

log = structlog.get_logger("keel.server.runs")

CONTROL_EVENTS = ("metadata", "end", "error")
"""Events every run reports, streamed or not."""
END_VALUES = "values"
"""A worker's `end` event carries the run's final values under this key, so the API answers
`wait` / `join` without reading the thread's checkpoint again; streams drop it."""


class Superseded(Exception):
    """The run ended elsewhere (cancelled) before it could start here."""


@dataclass
class RunRunner:
    """Runs one run to its end here and records how it ended."""

    graphs: ServedGraphs
    store: Store
    settings: ServiceSettings
    webhooks: WebhookSender
    """Posts a run's webhook when the run ends in this process; drained on close."""
    events: RedisEvents | None = None
    publish: bool = False
    """Set in a `keel worker`: events go to Redis for the API that streams the run."""
    outage_s: float = 600.0
    """How long run-status writes wait out a database outage before giving up."""

    async def set_status(self, run_id: str, status: str, **changes: Any) -> bool:
        """Record a run's status, waiting out a database outage shorter than a run may
        last: an accepted run is not failed by a Postgres restart. False when `only_from`
        was given and the run was in none of those states."""
        return await through_outage(
            lambda: self.store.set_run_status(run_id, status, **changes),
            within_s=self.outage_s,
        )

    def target(self, record: RunRecord) -> tuple[ServedGraph, Applied]:
        """The run's graph and the config and context it runs with, as admitted.

        A run recorded before assistants existed runs the built-in graph as it was."""
        info = record.kwargs.get("assistant")
        if not isinstance(info, Mapping):
            return self.graphs.get(LEGACY_GRAPH_ID) or self.graphs.default, Applied()
        served = self.graphs.get(str(info.get("graph_id")))
        if served is None:
            raise Unprocessable(
                f"graph {info.get('graph_id')!r} of run {record.run_id} is not served here"
            )
        return served, Applied.from_json(info)

    async def graph_input(
        self,
        served: ServedGraph,
        bound: BoundGraph,
        thread_id: str,
        body: RunCreate,
        principal: Principal,
        run_id: str,
    ) -> Any:
        """What the run sends the graph: a command, a new input, or None (continue)."""
        if body.command is not None:
            c = body.command
            return Command(
                resume=c.resume,
                update=c.update,
                goto=c.goto if c.goto is not None else (),
            )
        if body.input is not None:
            return await bound.start_input(body.input, tenant=principal.tenant_id, run_id=run_id)
        snapshot = await served.snapshot(thread_id)
        if not snapshot.next:
            raise Unprocessable(
                f"thread {public_thread_id(thread_id)} has nothing to continue: "
                "give 'input' (or 'command')"
            )
        return None

    async def plan(self, job: RunJob) -> tuple[RunHandle, Any] | None:
        """How to (re)start a run: from its input, or from the checkpoint it reached.
        None when there is nothing to run (it had finished, or its input is unusable)."""
        record = job.record
        started = False
        try:
            served, applied = self.target(record)
            bound = await served.bind(applied)
        except Unprocessable as exc:
            await self.set_status(record.run_id, "error", error=exc.message)
            await self.published_end(record.run_id, "error")
            await self.notify(job, "error", error=exc.message)
            return None
        if record.attempt:  # an attempt began: its input may be in the thread's state
            snapshot = await served.snapshot(record.thread_id)
            started = _started(snapshot, record)
            if started and not unfinished(snapshot):  # `next` alone misses a half-saved step
                await self.set_status(record.run_id, "success", thread=(record.thread_id, "idle"))
                await self.published_end(record.run_id, "success")
                await self.notify(job, "success")
                return None
        try:
            graph_input: Any = (
                None
                if started
                else await self.graph_input(
                    served, bound, record.thread_id, job.body, job.principal, record.run_id
                )
            )
        except Unprocessable as exc:
            await self.set_status(record.run_id, "error", error=exc.message)
            await self.published_end(record.run_id, "error")
            await self.notify(job, "error", error=exc.message)
            return None
        streamed = job.stream or job.body.stream_resumable or not self.publish
        handle = RunHandle(
            record=record,
            modes=job.body.modes if streamed else [],
            keep=self.settings.stream_buffer_events,
        )
        handle.emit("metadata", {"run_id": record.run_id, "attempt": record.attempt + 1})
        return handle, graph_input

    async def emit(
        self, handle: RunHandle, event: str, data: Any, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Tell the run's streams; `extra` fields go only to other processes (see `END_VALUES`)."""
        if not handle.modes and event not in CONTROL_EVENTS:
            return  # nobody streams this run: only its outcome is told
        handle.emit(event, data)
        if self.publish and self.events is not None:
            await self.events.publish(handle.run_id, event, {**data, **extra} if extra else data)

    async def run(self, handle: RunHandle, graph_input: Any, body: RunCreate) -> str:
        """Drive the run's graph to its end or an interrupt; its final status."""
        record = handle.record
        started = await self.set_status(
            record.run_id,
            "running",
            attempt=record.attempt + 1,
            thread=(record.thread_id, "busy"),
            only_from=ACTIVE_RUN_STATUSES,
        )
        if not started:  # cancelled after this process took it: the cancel won
            raise Superseded(record.run_id)
        handle.status = "running"
        served, applied = self.target(record)
        bound = await served.bind(applied)
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
        )

        key, public = record.thread_id, public_thread_id(record.thread_id)

        async def send(mode: str, chunk: Any) -> None:
            data = list(chunk) if mode == "messages" else chunk
            await self.emit(handle, mode, data if key == public else _named(data, key, public))

        principal = Principal(record.tenant_id, _role(record.kwargs))
        snapshot = await bound.drive(segment, principal, send)
        values = dict(snapshot.values or {})
        if snapshot.interrupts:
            values["__interrupt__"] = [interrupt_json(i) for i in snapshot.interrupts]
        handle.result = values
        return "interrupted" if snapshot.next else "success"

    async def finish(
        self, handle: RunHandle, status: str, *, error: str | None = None, alone: bool = True
    ) -> None:
        """Record how the run ended, tell its streams and post its webhook.

        `alone`: no other run of the thread is active here, so the thread's status follows.
        """
        record = handle.record
        thread_status = {"success": "idle", "error": "error"}.get(status, "idle")
        if status == "interrupted" and handle.cancel_reason is None:
            thread_status = "interrupted"
        cancelled = status == "interrupted" and handle.cancel_reason is not None
        ended = await asyncio.shield(
            self.set_status(
                record.run_id,
                status,
                error=error,
                thread=(record.thread_id, thread_status) if alone else None,
                # a cancel recorded meanwhile wins over the run's own end
                only_from=None if cancelled else ACTIVE_RUN_STATUSES,
            )
        )
        if not ended:
            current = await self.store.get_run_any(record.run_id)
            status = current.status if current is not None else "interrupted"
            error = current.error if current is not None else error
            if alone:
                await self.store.update_thread(record.thread_id, status="idle")
        handle.status = status
        if status == "error":
            handle.result = {"__error__": {"error": "RunError", "message": error or ""}}
        values = handle.result if status != "error" and self.publish else None
        await self.emit(
            handle,
            "end",
            {"run_id": record.run_id, "status": status},
            extra={END_VALUES: jsonable(values)} if values else None,
        )
        await self.notify(
            RunJob.of(record),
            status,
            values=handle.result if status != "error" else None,
            error=error,
        )

    async def notify(
        self,
        job: RunJob,
        status: str,
        *,
        values: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Post the ended run's webhook, if it asked for one (delivered in the background).

        Without `values` the thread's state is read here, before a temporary thread goes.
        The URL is checked again against this process's allowed hosts.
        """
        url = job.webhook
        if not url:
            return
        try:
            check_webhook(url, self.webhooks.policy)
        except Unprocessable as exc:
            log.warning("webhook.refused", run_id=job.run_id, reason=exc.message)
            return
        try:
            final = jsonable(values) if values else await self.thread_values(job.thread_id)
        except Exception as exc:
            log.warning("webhook.values_unread", run_id=job.run_id, error=type(exc).__name__)
            final = None
        payload = webhook_payload(job.record, status, values=final, error=error)
        self.webhooks.send(url, payload, run_id=job.run_id)

    async def published_end(self, run_id: str, status: str) -> None:
        """Tell other processes a run ended that never got a handle here."""
        if self.publish and self.events is not None:
            await self.events.publish(run_id, "end", {"run_id": run_id, "status": status})

    async def served_for(self, thread_id: str) -> ServedGraph:
        """The graph whose state the thread holds."""
        return self.graphs.for_thread({"graph_id": await self.store.thread_graph(thread_id)})

    async def thread_values(self, thread_id: str) -> dict[str, Any]:
        """The thread's values as the protocol shows them (with `__interrupt__`)."""
        snapshot = await (await self.served_for(thread_id)).snapshot(thread_id)
        values: dict[str, Any] = jsonable(snapshot.values or {})
        if snapshot.interrupts:
            values["__interrupt__"] = [interrupt_json(i) for i in snapshot.interrupts]
        return values

    async def drop_thread(self, thread_id: str, tenant_id: str) -> None:
        """Delete a temporary thread: its checkpoints, journal rows and record."""
        with contextlib.suppress(Exception):
            await (await self.served_for(thread_id)).delete_thread(thread_id)
            await self.store.delete_thread(thread_id, tenant_id)


def _named(value: Any, key: str, thread_id: str) -> Any:
    """`value` (a stream chunk) with the thread named as its client knows it: LangGraph
    puts the thread's key in configs and metadata (`thread_id`)."""
    if isinstance(value, Mapping):
        return {
            k: thread_id if k == "thread_id" and v == key else _named(v, key, thread_id)
            for k, v in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(_named(v, key, thread_id) for v in value)
    return value


def _started(snapshot: Any, record: RunRecord) -> bool:
    """Whether the run's input is in the thread's state: a Keel agent's state names its run
    id; a plain graph's checkpoint metadata carries the run id of the run that wrote it."""
    if (snapshot.values or {}).get("run_id") == record.run_id:
        return True
    return bool((snapshot.metadata or {}).get("run_id") == record.run_id)


def _role(kwargs: Mapping[str, Any]) -> str:
    return str(kwargs.get("role", "admin"))
