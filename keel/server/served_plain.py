"""A plain LangGraph graph served with the service's machinery.

The graph (or the graph a factory returns, called per run with the run's config, as the
Agent Server protocol allows) is compiled with the service's checkpointer and store. A run
streams, is observed (logs, metrics) and traced like a Keel agent's, and waits out a short
storage outage the same way: the segment is tried again from the last checkpoint, without
its input once the thread has taken it in. Its `config` and `context` are the assistant's,
then the run's own: config keys a graph cannot take, or context keys its `context_schema`
does not declare, are a 422 naming the field.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore
from langgraph.types import StateSnapshot
from pydantic import BaseModel

from keel.checkpoints import Storage
from keel.checkpoints.outage import is_storage_outage
from keel.checkpoints.retention import delete_run_checkpoints
from keel.observability.observer import observe_run
from keel.observability.tracing import Tracing
from keel.runtime.driver import OUTAGE_FIRST_DELAY_S, OnChunk, Segment, stream_graph
from keel.server.auth import Principal
from keel.server.errors import Unprocessable
from keel.server.graph_info import draw, graph_schemas, graph_subgraphs
from keel.server.served import CONFIG_KEYS, Applied, merge_config
from keel.types import RunMetadata, RunResult

__all__ = ["PlainGraph"]

OUTAGE_MAX_DELAY_S = 5.0


def context_fields(schema: Any) -> set[str] | None:
    """The keys a graph's `context_schema` declares (None: it declares none)."""
    if schema is None:
        return None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return set(schema.model_fields)
    if dataclasses.is_dataclass(schema):
        return {f.name for f in dataclasses.fields(schema)}
    try:
        return set(get_type_hints(schema))
    except Exception:
        return None


@dataclass
class PlainGraph:
    """A compiled graph or a graph factory, served."""

    graph_id: str
    saver: BaseCheckpointSaver[Any]
    storage: Storage | None
    graph: Pregel | None = None
    factory: Any = None
    """A `keel.project.GraphEntry` of kind `factory` (its factory makes the graph per use)."""
    item_store: BaseStore | None = None
    tracing: Tracing | None = None
    durability: Literal["sync", "async", "exit"] = "async"
    run_timeout_s: float = 600.0
    """How long a run waits out storage outages in total."""
    description: str = ""
    kind: Literal["keel", "graph"] = "graph"

    def __post_init__(self) -> None:
        if (self.graph is None) == (self.factory is None):
            raise ValueError("a plain graph has a graph or a factory")
        self._compiled = (
            self.graph.copy(update={"checkpointer": self.saver, "store": self.item_store})
            if self.graph is not None
            else None
        )

    @asynccontextmanager
    async def opened(self, config: RunnableConfig | None = None) -> AsyncIterator[Pregel]:
        """The graph on the service's checkpointer and store: a factory's is made for
        `config` (the run's, or the thread's for a state read) and closed after use."""
        if self._compiled is not None:
            yield self._compiled
            return
        from keel.project import open_factory_graph

        async with open_factory_graph(
            self.factory, config or RunnableConfig(configurable={})
        ) as made:
            yield made.copy(update={"checkpointer": self.saver, "store": self.item_store})

    async def compiled(self, config: RunnableConfig | None = None) -> Pregel:
        """The graph for a read that needs no open resources of a factory's graph."""
        async with self.opened(config) as graph:
            return graph

    # options ------------------------------------------------------------------------------

    async def check(self, applied: Applied) -> None:
        for key in applied.config:
            if key not in CONFIG_KEYS:
                raise Unprocessable(
                    f"config.{key} cannot apply: a graph's config takes "
                    + ", ".join(sorted(CONFIG_KEYS))
                )
        if not applied.context:
            return
        graph = await self.compiled(RunnableConfig(**applied.config))  # type: ignore[typeddict-item]
        declared = context_fields(graph.context_schema)
        if declared is None:
            raise Unprocessable(
                f"context.{next(iter(applied.context))} cannot apply: graph "
                f"{self.graph_id!r} declares no context_schema"
            )
        unknown = [k for k in applied.context if k not in declared]
        if unknown:
            raise Unprocessable(
                f"context.{unknown[0]} cannot apply: graph {self.graph_id!r} declares "
                f"context keys {', '.join(sorted(declared)) or '(none)'}"
            )

    async def bind(self, applied: Applied) -> PlainBound:
        await self.check(applied)
        return PlainBound(self, applied)

    # thread state -------------------------------------------------------------------------

    @staticmethod
    def thread_config(
        thread_id: str, checkpoint: Mapping[str, Any] | None = None
    ) -> RunnableConfig:
        return RunnableConfig(configurable={"thread_id": thread_id, **(checkpoint or {})})

    async def nodes(self) -> set[str]:
        return set((await self.compiled()).nodes) - {"__start__"}

    async def snapshot(
        self, thread_id: str, checkpoint: Mapping[str, Any] | None = None
    ) -> StateSnapshot:
        config = self.thread_config(thread_id, checkpoint)
        return await (await self.compiled(config)).aget_state(config)

    async def history(
        self,
        thread_id: str,
        *,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int,
    ) -> AsyncIterator[StateSnapshot]:
        config = self.thread_config(thread_id)
        graph = await self.compiled(config)
        async for snapshot in graph.aget_state_history(
            config, filter=filter, before=before, limit=limit
        ):
            yield snapshot

    async def update_state(
        self,
        thread_id: str,
        values: Any,
        *,
        as_node: str | None,
        checkpoint: Mapping[str, Any] | None,
    ) -> RunnableConfig:
        config = self.thread_config(thread_id, checkpoint)
        return await (await self.compiled(config)).aupdate_state(config, values, as_node=as_node)

    async def delete_thread(self, thread_id: str) -> None:
        await self.saver.adelete_thread(thread_id)

    async def delete_runs(self, thread_id: str, run_ids: list[str]) -> None:
        if self.storage is not None:
            await delete_run_checkpoints(self.storage, thread_id, run_ids)

    # description ---------------------------------------------------------------------------

    async def drawable(self, xray: int | bool) -> dict[str, Any]:
        return await draw(await self.compiled(), xray)

    async def schemas(self) -> dict[str, Any]:
        return graph_schemas(await self.compiled(), self.graph_id)

    async def subgraphs(self, namespace: str | None, recurse: bool) -> dict[str, Any]:
        return graph_subgraphs(await self.compiled(), self.graph_id, namespace, recurse)

    async def aclose(self) -> None:
        return None


_Mark = tuple[str | None, frozenset[str]]


def _mark(snapshot: StateSnapshot) -> _Mark:
    found = (snapshot.config or {}).get("configurable", {}).get("checkpoint_id")
    return (str(found) if found else None, frozenset(i.id for i in snapshot.interrupts))


@dataclass
class PlainBound:
    """A plain graph with one run's config and context."""

    served: PlainGraph
    applied: Applied

    async def start_input(self, payload: dict[str, Any], *, tenant: str, run_id: str) -> Any:
        return payload

    def _config(self, segment: Segment) -> RunnableConfig:
        own: dict[str, Any] = {
            "configurable": {"thread_id": segment.thread_id, "run_id": segment.run_id},
            "metadata": {
                "run_id": segment.run_id,
                "tenant": segment.tenant,
                "graph_id": self.served.graph_id,
            },
        }
        if segment.checkpoint_id:
            own["configurable"]["checkpoint_id"] = segment.checkpoint_id
        config: RunnableConfig = merge_config(self.applied.config, own)  # type: ignore[assignment]
        tracing = self.served.tracing
        if tracing is not None:
            config["callbacks"] = tracing.callbacks(config.get("metadata"))
        return config

    async def drive(
        self, segment: Segment, principal: Principal, on_chunk: OnChunk | None
    ) -> StateSnapshot:
        """Run the segment observed and traced, waiting out a short storage outage."""
        config = self._config(segment)
        async with self.served.opened(config) as graph:
            return await self._drive(graph, config, segment, on_chunk)

    async def _drive(
        self, graph: Pregel, config: RunnableConfig, segment: Segment, on_chunk: OnChunk | None
    ) -> StateSnapshot:
        started = time.perf_counter()
        async with observe_run(
            run_id=segment.run_id,
            thread_id=segment.thread_id,
            tenant=segment.tenant,
            model=f"graph:{self.served.graph_id}",
            resumed=segment.graph_input is None,
        ) as observer:
            payload = segment.graph_input
            thread = PlainGraph.thread_config(segment.thread_id)
            before = _mark(await graph.aget_state(thread)) if payload is not None else None
            delay, waited = OUTAGE_FIRST_DELAY_S, 0.0
            while True:
                try:
                    snapshot = await self._stream(
                        graph, segment, config, payload, observer, on_chunk
                    )
                    break
                except Exception as exc:
                    if not is_storage_outage(exc) or waited >= self.served.run_timeout_s:
                        raise
                    observer.log.warning(
                        "run.storage_retry", error=type(exc).__name__, wait_s=delay
                    )
                    await asyncio.sleep(delay)
                    waited += delay
                    delay = min(delay * 4, OUTAGE_MAX_DELAY_S)
                    try:
                        moved = (
                            before is not None and _mark(await graph.aget_state(thread)) != before
                        )
                    except Exception as again:
                        if not is_storage_outage(again):
                            raise
                        continue
                    if moved:  # the thread took the input in: continue from its checkpoint
                        payload = None
                        config["configurable"].pop("checkpoint_id", None)
            interrupted = bool(snapshot.next)
            observer.finish(
                RunResult(
                    output="",
                    success=True,
                    error=None,
                    thread_id=segment.thread_id,
                    metadata=RunMetadata(
                        run_id=segment.run_id,
                        model=f"graph:{self.served.graph_id}",
                        tenant=segment.tenant or "default",
                        execution_time=round(time.perf_counter() - started, 4),
                    ),
                    status="interrupted" if interrupted else "finished",
                )
            )
        return snapshot

    async def _stream(
        self,
        graph: Pregel,
        segment: Segment,
        config: RunnableConfig,
        payload: Any,
        observer: Any,
        on_chunk: OnChunk | None,
    ) -> StateSnapshot:
        wanted = list(dict.fromkeys(segment.stream_modes))
        modes = list(dict.fromkeys([*wanted, "updates"]))
        tracing = self.served.tracing
        scope = tracing.scope() if tracing is not None else None
        if scope is not None:
            scope.__enter__()
        try:
            async for mode, chunk in stream_graph(
                graph,
                payload,
                config,
                context=dict(self.applied.context) or None,
                stream_mode=modes,
                durability=segment.durability or self.served.durability,
                interrupt_before=segment.interrupt_before,
                interrupt_after=segment.interrupt_after,
            ):
                if mode == "updates" and isinstance(chunk, Mapping):
                    observer.on_update(chunk)
                if on_chunk is not None and mode in wanted:
                    await on_chunk(mode, chunk)
        finally:
            if scope is not None:
                scope.__exit__(None, None, None)
        return await graph.aget_state(PlainGraph.thread_config(segment.thread_id))
