"""What a `graphs` entry holds: a Keel agent, a LangGraph graph, or a graph factory.

The kinds are the Agent Server's, plus Keel's own agent definition:
- `keel`: a `keel.Agent`; served and run with all of Keel's machinery.
- `graph`: a compiled graph (`Pregel`, e.g. `builder.compile()`); an uncompiled `StateGraph`
  is compiled here, without a checkpointer (the runner supplies one).
- `factory`: a function taking the run's `RunnableConfig` (or nothing), sync or async,
  returning a graph (or a context manager yielding one), called once per run.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from keel.agents import Agent
from keel.errors import ConfigError, UsageError

__all__ = ["GraphEntry", "GraphKind", "classify", "open_factory_graph"]

GraphKind = Literal["keel", "graph", "factory"]

Factory = Callable[[RunnableConfig], Any]


@dataclass(frozen=True)
class GraphEntry:
    """One graph of a project, loaded and checked."""

    graph_id: str
    """Its id in `langgraph.json` and in the service (assistants' `graph_id`)."""
    source: str
    """Where it came from, as written: `./agents.py:support`."""
    kind: GraphKind
    agent: Agent | None = None
    """The `keel.Agent` definition (kind `keel`)."""
    graph: Pregel[Any, Any, Any, Any] | None = None
    """The compiled graph, without checkpointer (kind `graph`)."""
    factory: Factory | None = None
    """Called with each run's config (kind `factory`); its result goes through
    `open_factory_graph`. A factory written without a parameter is wrapped to take one."""
    description: str = ""
    """From `langgraph.json` (`{"path": …, "description": …}`) or the agent's own."""


def _callable_factory(config: Path, graph_id: str, source: str, fn: Callable[..., Any]) -> Factory:
    key = f"graphs.{graph_id}"
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{config}: {key}: '{source}' is callable but its signature cannot be read; fix: "
            "point at a compiled graph or a plain function `def make_graph(config)`"
        ) from exc
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) > 1 or (required and required[0].kind == required[0].KEYWORD_ONLY):
        raise ConfigError(
            f"{config}: {key}: the factory '{source}' takes "
            f"({', '.join(p.name for p in params)}); fix: a graph factory takes one argument, "
            "the run's RunnableConfig, or none"
        )
    if not positional and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return lambda run_config: fn()
    return fn


def classify(config: Path, graph_id: str, source: str, obj: Any, description: str) -> GraphEntry:
    """The entry for `obj`; `ConfigError` naming the file, key and fix for anything else."""
    if isinstance(obj, Agent):
        return GraphEntry(
            graph_id, source, "keel", agent=obj, description=description or obj.description
        )
    if isinstance(obj, Pregel):
        return GraphEntry(graph_id, source, "graph", graph=obj, description=description)
    if isinstance(obj, StateGraph):
        return GraphEntry(graph_id, source, "graph", graph=obj.compile(), description=description)
    if callable(obj) and not inspect.isclass(obj):
        factory = _callable_factory(config, graph_id, source, obj)
        return GraphEntry(graph_id, source, "factory", factory=factory, description=description)
    what = f"the class {obj.__name__}" if inspect.isclass(obj) else f"a {type(obj).__name__}"
    raise ConfigError(
        f"{config}: graphs.{graph_id}: '{source}' is {what}, not a graph; fix: point at a "
        "keel.Agent, a compiled graph (builder.compile()), a StateGraph, or a function taking "
        "the run's config and returning one"
    )


async def _resolve(value: Any) -> Any:
    while inspect.isawaitable(value):
        value = await value
    return value


@asynccontextmanager
async def open_factory_graph(
    entry: GraphEntry, config: RunnableConfig
) -> AsyncIterator[Pregel[Any, Any, Any, Any]]:
    """The graph `entry`'s factory makes for one run, as the Agent Server builds it.

    The factory may be sync or async and may return a graph, a `StateGraph` (compiled here),
    or a (sync or async) context manager yielding one, closed when the run's block ends.
    """
    if entry.factory is None:
        raise UsageError(f"graph '{entry.graph_id}' is a {entry.kind}, not a factory")
    value = await _resolve(entry.factory(config))
    if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
        async with value as made:
            yield _as_graph(entry, made)
    elif hasattr(value, "__enter__") and hasattr(value, "__exit__"):
        with value as made:
            yield _as_graph(entry, made)
    else:
        yield _as_graph(entry, value)


def _as_graph(entry: GraphEntry, value: Any) -> Pregel[Any, Any, Any, Any]:
    if isinstance(value, StateGraph):
        return value.compile()
    if isinstance(value, Pregel):
        return value
    raise UsageError(
        f"graph '{entry.graph_id}': the factory '{entry.source}' returned a "
        f"{type(value).__name__}, not a graph; make it return a compiled graph or a StateGraph"
    )
