"""The graphs one service process serves, opened from the project (`langgraph.json`).

```python
async with open_graphs(settings, project) as graphs:   # the API and every `keel worker`
    served = graphs.get("support")                      # a ServedGraph, or None
```
Every Keel agent gets its `AgentRuntime`, all on one checkpoint storage and journal (the
first agent's); every plain graph is compiled with that storage's checkpointer and the
service's item store. Without a project, the built-in data assistant is served as `agent`
(its id before projects existed, which old run records and clients use).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from keel.config import Settings
from keel.runtime import open_agent
from keel.server.served import ServedGraph
from keel.server.served_keel import KeelGraph
from keel.server.served_plain import PlainGraph
from keel.tools.registry import ToolRegistry

__all__ = [
    "LEGACY_ASSISTANT_ID",
    "LEGACY_GRAPH_ID",
    "NAMESPACE_GRAPH",
    "ServedGraphs",
    "default_assistant_id",
    "open_graphs",
]

LEGACY_GRAPH_ID = "agent"
LEGACY_ASSISTANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "keel:assistant:agent"))
"""The built-in agent's assistant id before projects existed (kept for clients and runs)."""
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
"""The namespace the Agent Server derives a graph's default assistant id from."""


def default_assistant_id(graph_id: str) -> str:
    """The id of a graph's default assistant, as the Agent Server derives it."""
    if graph_id == LEGACY_GRAPH_ID:
        return LEGACY_ASSISTANT_ID
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))


@dataclass
class ServedGraphs:
    """Graph id -> served graph, with the storage they share."""

    graphs: dict[str, ServedGraph]
    """Every graph id the service answers to, in the project's order."""
    listed: list[str]
    """The graph ids with a default assistant in listings (an alias of another id is not)."""
    base: Any
    """The first Keel agent's `AgentRuntime`: its storage, journal and resilience are the
    service's."""
    item_store: BaseStore | None = None
    """The service's item store (`/store`), which plain graphs are compiled with."""

    def get(self, graph_id: str | None) -> ServedGraph | None:
        return self.graphs.get(graph_id) if graph_id else None

    @property
    def default_id(self) -> str:
        return self.listed[0]

    @property
    def default(self) -> ServedGraph:
        return self.graphs[self.default_id]

    def for_thread(self, metadata: Mapping[str, Any]) -> ServedGraph:
        """The graph a thread's state belongs to (its `graph_id`; the default before any)."""
        return self.get(metadata.get("graph_id")) or self.default

    def __iter__(self) -> Iterator[str]:
        return iter(self.graphs)

    @property
    def storage(self) -> Any:
        return self.base.storage

    @property
    def saver(self) -> BaseCheckpointSaver[Any] | None:
        saver = self.base.graph.checkpointer
        return saver if isinstance(saver, BaseCheckpointSaver) else None

    @property
    def journal(self) -> Any:
        return self.base.context.journal

    @property
    def settings(self) -> Settings:
        settings: Settings = self.base.settings
        return settings

    @classmethod
    def of_runtime(cls, runtime: Any, settings: Settings) -> ServedGraphs:
        """Only the built-in agent, served from a runtime the caller opened (tests)."""
        served = KeelGraph(LEGACY_GRAPH_ID, runtime, settings.service)
        return cls({LEGACY_GRAPH_ID: served}, [LEGACY_GRAPH_ID], runtime)


def _open_runtime(
    definition: Any,
    settings: Settings,
    **kwargs: Any,
) -> Any:
    """`open_agent` for a definition (the built-in agent when None)."""
    if definition is None:
        return open_agent(settings, **kwargs)
    return open_agent(definition, settings=settings, **kwargs)


@asynccontextmanager
async def open_graphs(
    settings: Settings,
    project: Any = None,
    *,
    model: BaseChatModel | None = None,
    tools: ToolRegistry | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    item_store: Any = None,
) -> AsyncIterator[ServedGraphs]:
    """Open every graph of `project` (a `keel.project.Project`; None: the built-in agent).

    `model` / `tools` replace the built-in agent's (tests script it); `item_store` is an
    async context factory `(runtime) -> BaseStore`, opened on the first runtime's storage,
    that plain graphs are compiled with (their `get_store()`).
    """
    if project is None:
        from keel.project.loader import builtin_project

        project = builtin_project()
    entries = list(project.graphs.values())
    async with AsyncExitStack() as stack:
        keel_entries = [e for e in entries if e.kind == "keel"]
        first = keel_entries[0] if keel_entries else None
        first_def = first.agent if first is not None else None
        overrides: dict[str, Any] = {}
        if first_def is None or getattr(project, "path", None) is None:
            overrides = {"model": model, "tools": tools}  # the built-in agent, scripted
        base = await stack.enter_async_context(
            _open_runtime(first_def, settings, checkpointer=checkpointer, **overrides)
        )
        saver = base.graph.checkpointer
        journal = base.context.journal
        store: BaseStore | None = (
            await stack.enter_async_context(item_store(base)) if item_store else None
        )

        def open_def(definition: Any) -> Any:
            return _open_runtime(definition, settings, checkpointer=saver, journal=journal)

        graphs: dict[str, ServedGraph] = {}
        listed: list[str] = []
        by_agent: dict[int, KeelGraph] = {}
        served_graph: ServedGraph
        for entry in entries:
            if entry.kind == "keel":
                key = id(entry.agent)
                known = by_agent.get(key)
                if known is None:
                    runtime = (
                        base
                        if entry is first or entry.agent is first_def
                        else await stack.enter_async_context(open_def(entry.agent))
                    )
                    known = KeelGraph(
                        entry.graph_id,
                        runtime,
                        settings.service,
                        definition=entry.agent,
                        open_runtime=open_def if entry.agent is not None else None,
                        description=entry.description,
                    )
                    stack.push_async_callback(known.aclose)
                    by_agent[key] = known
                    listed.append(entry.graph_id)
                elif entry.graph_id == LEGACY_GRAPH_ID and getattr(project, "path", None) is None:
                    # the built-in project: `agent` is listed (as before), `data_analyst` too
                    listed.insert(listed.index(known.graph_id), LEGACY_GRAPH_ID)
                    listed.remove(known.graph_id)
                    known.graph_id = LEGACY_GRAPH_ID
                served_graph = known
            else:
                served_graph = PlainGraph(
                    entry.graph_id,
                    saver,
                    base.storage,
                    graph=entry.graph,
                    factory=entry if entry.kind == "factory" else None,
                    item_store=store,
                    tracing=base.tracing,
                    durability=settings.durability,
                    run_timeout_s=settings.limits.run_timeout_s,
                    description=entry.description,
                )
                listed.append(entry.graph_id)
            graphs[entry.graph_id] = served_graph
        if not graphs:
            served_graph = KeelGraph(
                LEGACY_GRAPH_ID, base, settings.service, description=_BUILTIN_DESCRIPTION
            )
            graphs[LEGACY_GRAPH_ID] = served_graph
            listed.append(LEGACY_GRAPH_ID)
        yield ServedGraphs(graphs, listed, base, store)


_BUILTIN_DESCRIPTION = "Keel's agent: reason, act, observe, fallback, finish."
