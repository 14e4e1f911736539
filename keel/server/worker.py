"""`keel worker`: execute queued runs on any machine that reaches the service's Postgres.

Each worker runs up to `--concurrency` runs at once, sends a heartbeat every
`KEEL_SERVICE__WORKER_HEARTBEAT_S`, and on the same beat requeues the runs of workers that
went silent for `KEEL_SERVICE__WORKER_STALLED_AFTER_S` (killed, machine lost). A requeued
run continues on whichever worker takes it, from its last checkpoint. Stream events go to
Redis when `KEEL_REDIS_URL` is set, so the API can stream a run executing elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import procrastinate
import structlog
from langchain_core.language_models import BaseChatModel

from keel.config import Settings
from keel.errors import ConfigError
from keel.server.events import RedisEvents
from keel.server.graphs import open_graphs
from keel.server.queue import (
    QUEUE,
    TASK,
    ThreadFence,
    ensure_queue_schema,
    make_queue_app,
    stalled_job_reaper,
    startup_lock,
)
from keel.server.routes_store import open_item_store
from keel.server.runs import RunManager
from keel.server.store import (
    OUTAGE_FIRST_DELAY_S,
    OUTAGE_MAX_DELAY_S,
    Store,
    is_db_outage,
    service_db_url,
)
from keel.tools.registry import ToolRegistry

__all__ = ["queue_db_url", "redis_events", "run_worker"]

log = structlog.get_logger("keel.server.worker")

RETRY = procrastinate.RetryStrategy(max_attempts=10, wait=1, linear_wait=1)
"""A job that fails outside the run (the database went away) is tried again; the run
continues from its checkpoint. Failures inside the run end it as `error` and are not
retried here."""


def queue_db_url(settings: Settings) -> str:
    """The Postgres database the queue lives in (the service database)."""
    url = service_db_url(settings)
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "the run queue needs Postgres: set KEEL_SERVICE__DB_URL (or a Postgres "
            "KEEL_CHECKPOINT_URL) to postgresql://…"
        )
    return url


@asynccontextmanager
async def redis_events(settings: Settings) -> AsyncIterator[RedisEvents | None]:
    """The cross-process event stream, when Redis is configured."""
    if not settings.redis_url:
        yield None
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        yield RedisEvents(client, settings.redis_prefix)
    finally:
        await client.aclose()


async def run_worker(
    settings: Settings,
    *,
    concurrency: int = 4,
    model: BaseChatModel | None = None,
    tools: ToolRegistry | None = None,
    project: Any = None,
) -> None:
    """Execute queued runs until SIGINT/SIGTERM (then finish the runs in hand).

    `project`: the graphs to serve, the same the API serves (None: the built-in agent).
    A worker started while Postgres is down (a restart, an outage) waits for it with backoff
    instead of exiting: everything it opened is closed and its start-up begins again."""
    started = asyncio.Event()
    delay = OUTAGE_FIRST_DELAY_S
    while True:
        try:
            await _serve(settings, started, concurrency, model, tools, project)
            return
        except Exception as exc:
            if started.is_set() or not is_db_outage(exc):
                raise
            log.warning("worker.database_unavailable", retry_in_s=delay, error=str(exc)[:300])
            await asyncio.sleep(delay)
            delay = min(delay * 2, OUTAGE_MAX_DELAY_S)


async def _serve(
    settings: Settings,
    started: asyncio.Event,
    concurrency: int,
    model: BaseChatModel | None,
    tools: ToolRegistry | None,
    project: Any,
) -> None:
    """One start of the worker: open everything, then execute runs (`started` once it does)."""
    db_url = queue_db_url(settings)
    service = settings.service
    store = Store.open(db_url, pool_size=settings.service.db_pool_size)
    try:
        await store.migrate()
        await ensure_queue_schema(db_url)
        async with AsyncExitStack() as stack:
            async with startup_lock(settings.checkpoint_url):
                graphs = await stack.enter_async_context(
                    open_graphs(
                        settings,
                        project,
                        model=model,
                        tools=tools,
                        item_store=lambda runtime: open_item_store(settings, runtime.storage),
                    )
                )
            events = await stack.enter_async_context(redis_events(settings))
            fence = ThreadFence(db_url)
            await fence.open()
            stack.push_async_callback(fence.close)
            manager = RunManager(
                graphs,
                store,
                service.model_copy(update={"max_in_flight": concurrency}),
                events=events,
                worker=True,
                fence=fence.hold,
            )
            stack.push_async_callback(manager.webhooks.close)  # drain pending webhooks
            app = make_queue_app(db_url)

            @app.task(name=TASK, queue=QUEUE, retry=RETRY, pass_context=True)
            async def execute_run(context: procrastinate.JobContext, run_id: str) -> None:
                await manager.execute_job(run_id, context.job.lock)

            async with app.open_async():
                reaper = asyncio.create_task(
                    stalled_job_reaper(
                        app,
                        every_s=service.worker_heartbeat_s,
                        seconds_since_heartbeat=service.worker_stalled_after_s,
                    )
                )
                log.info("worker.started", concurrency=concurrency)
                started.set()
                try:
                    await app.run_worker_async(
                        queues=[QUEUE],
                        concurrency=concurrency,
                        update_heartbeat_interval=service.worker_heartbeat_s,
                        stalled_worker_timeout=service.worker_stalled_after_s,
                        abort_job_polling_interval=1.0,
                        fetch_job_polling_interval=1.0,
                        install_signal_handlers=True,
                        wait=True,
                    )
                finally:
                    reaper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reaper
    finally:
        await store.close()
