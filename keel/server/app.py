"""The HTTP API: a FastAPI app speaking the LangGraph Agent Server protocol.

```python
app = create_app(load_settings())          # `keel serve` runs this under uvicorn
```
The lifespan opens the project's graphs (`graphs.open_graphs`: every Keel agent's runtime and
every plain graph, on one checkpointer; the built-in agent without a project) and Keel's
store, migrates the store, resumes runs a previous process left unfinished and ticks the
cron scheduler (`crons.CronScheduler`). Tests pass `model=` to script the built-in agent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver

from keel.config import Settings
from keel.server.admission import Admission
from keel.server.assistants import Assistants, AssistantStore
from keel.server.auth import Authenticator
from keel.server.crons import CronScheduler, CronStore
from keel.server.deps import Services, Svc
from keel.server.errors import BodyGuard, install_error_handlers, responses
from keel.server.graphs import open_graphs
from keel.server.queue import RunQueue, ensure_queue_schema, make_queue_app, startup_lock
from keel.server.routes_artifacts import router as artifacts_router
from keel.server.routes_assistants import router as assistants_router
from keel.server.routes_crons import cron_starter
from keel.server.routes_crons import router as crons_router
from keel.server.routes_runs import router as runs_router
from keel.server.routes_store import open_item_store
from keel.server.routes_store import router as store_router
from keel.server.routes_thread_stream import router as thread_stream_router
from keel.server.routes_threads import router as threads_router
from keel.server.runs import RunManager
from keel.server.store import Store, service_db_url
from keel.server.worker import queue_db_url, redis_events
from keel.tools.registry import ToolRegistry

__all__ = ["create_app"]

VERSION = "0.1.0"


@asynccontextmanager
async def _queue(db_url: str, distributed: bool) -> AsyncIterator[RunQueue | None]:
    """The procrastinate queue runs go to, in a distributed deployment."""
    if not distributed:
        yield None
        return
    await ensure_queue_schema(db_url)
    app = make_queue_app(db_url)
    async with app.open_async():
        yield RunQueue(app)


def create_app(
    settings: Settings,
    *,
    model: BaseChatModel | None = None,
    tools: ToolRegistry | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    project: Any = None,
) -> FastAPI:
    """The API app for these settings, serving every graph of `project` (a
    `keel.project.Project`; None: the built-in agent); everything opens in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        distributed = settings.service.queue == "procrastinate"
        db_url = queue_db_url(settings) if distributed else service_db_url(settings)
        store = Store.open(db_url, pool_size=settings.service.db_pool_size)
        try:
            await store.migrate()
            async with AsyncExitStack() as stack:
                async with startup_lock(settings.checkpoint_url):
                    graphs = await stack.enter_async_context(
                        open_graphs(
                            settings,
                            project,
                            model=model,
                            tools=tools,
                            checkpointer=checkpointer,
                            item_store=lambda runtime: open_item_store(settings, runtime.storage),
                        )
                    )
                    app.state.item_store = graphs.item_store
                queue = await stack.enter_async_context(_queue(db_url, distributed))
                events = await stack.enter_async_context(redis_events(settings))
                manager = RunManager(
                    graphs,
                    store,
                    settings.service,
                    admission=Admission(settings, graphs.base.context.resilience),
                    queue=queue,
                    events=events,
                )
                assistants = Assistants(AssistantStore(store.engine), graphs)
                app.state.services = Services(
                    graphs=graphs,
                    store=store,
                    runs=manager,
                    auth=Authenticator(store, settings.service),
                    assistants=assistants,
                )
                if queue is None:
                    await manager.recover()
                app.state.crons = CronScheduler(
                    CronStore(store.engine),
                    cron_starter(store, manager, assistants),
                    tick_s=settings.service.cron_tick_s,
                )
                app.state.crons.run()
                try:
                    yield
                finally:
                    await app.state.crons.stop()
                    await manager.close()
        finally:
            await store.close()

    app = FastAPI(
        title="Keel",
        version=VERSION,
        description="Keel's agent runtime, speaking the LangGraph Agent Server protocol.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyGuard, max_bytes=settings.service.max_body_bytes)
    app.include_router(threads_router)
    app.include_router(runs_router)
    app.include_router(store_router)
    app.include_router(assistants_router)
    app.include_router(crons_router)
    app.include_router(artifacts_router)
    app.include_router(thread_stream_router)
    _add_meta_routes(app)
    return app


def _add_meta_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ok", tags=["health"], include_in_schema=False)
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/readyz", tags=["health"], responses=responses(503))
    async def readyz(svc: Svc) -> Response:
        """The store answers and the checkpointer is open: ready for traffic."""
        try:
            await svc.store.ping()
        except Exception as exc:
            body = {"status": "unavailable", "reason": f"store: {type(exc).__name__}"}
            import orjson

            return Response(orjson.dumps(body), 503, media_type="application/json")
        return Response(b'{"status":"ready"}', media_type="application/json")

    @app.get("/info", tags=["health"])
    async def info() -> dict[str, Any]:
        return {"version": VERSION, "flags": {"assistants": True, "crons": True}}

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics() -> Response:
        from keel.observability.metrics import CONTENT_TYPE_LATEST, render_metrics

        return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)
