"""The agent graph: five nodes, and conditional edges that carry retry and degradation.

```
START → reason ─tools──▶ act ─continue─────────────▶ reason
          │ │               └─anything else─▶ observe ─continue─▶ reason
          │ ├─answer──────────────────────────────▶ finish → END
          │ ├─repair / retry ─▶ reason (same node, counters in the state)
          │ └─degrade ─▶ fallback ─▶ finish
observe ─degrade (tool failure, iteration limit, deadline)─▶ fallback
observe ─retry (transient failure of an idempotent tool, attempts left)─▶ act
fallback ─downgrade (a model failure, another tier left)─▶ reason
```
`act` closes the cycle itself when its results leave nothing to decide (no retry, no
failure beyond repair, limit and deadline not reached: `keel.nodes.observe.goes_on`), so
the usual path is two steps per tool call, as in LangGraph's own tool loop; `observe`
decides everything else.
Edge functions are pure functions of the state: nodes write a `signal`, edges route on it.
Node names are persisted in checkpoints: renaming one needs a migration note.

Every node gets its run context (`AgentContext`) from LangGraph's `runtime.context`. When the
caller passes none (a plain `ainvoke`, or the graph as a node of the caller's own graph, whose
context is the caller's), the graph's `context` provider builds it: that is how a
`keel.Agent`'s graph runs anywhere a LangGraph graph runs. `reason` also fills in the
run-level keys (question, limits, budget, deadline, run id, policy) of a run started from
messages alone (see `keel.graphs.start`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypedDict, TypeVar, cast

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import CONFIG_KEY_READ
from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel._algo import local_read
from langgraph.runtime import Runtime

from keel.errors import UsageError
from keel.graphs.flat_state import FlatStateGraph
from keel.graphs.start import start_update, with_start
from keel.nodes import AgentContext, act, cost_controlled, fallback, finish, observe, reason
from keel.types import AgentChannels, AgentState, Signal, flat, fold

__all__ = [
    "AgentState",
    "ContextProvider",
    "build_agent_graph",
    "route_after_act",
    "route_after_fallback",
    "route_after_observe",
    "route_after_reason",
]

ReasonRoute = Literal["act", "reason", "finish", "fallback"]
ActRoute = Literal["reason", "observe"]
FallbackRoute = Literal["reason", "finish"]
ObserveRoute = Literal["reason", "act", "fallback"]


def route_after_reason(state: AgentState) -> ReasonRoute:
    """tools → act; answer → finish; repair/retry → reason again; anything else → fallback."""
    signal = state.get("signal")
    if signal == "tools":
        return "act"
    if signal == "answer":
        return "finish"
    if signal in ("repair", "retry"):
        return "reason"
    return "fallback"


def route_after_act(state: AgentState) -> ActRoute:
    """continue (act closed the cycle) → reason; anything else → observe, which decides."""
    return "reason" if state.get("signal") == "continue" else "observe"


def route_after_observe(state: AgentState) -> ObserveRoute:
    """continue → reason; retry (transient tool failure) → act; anything else → fallback."""
    signal = state.get("signal")
    if signal == "continue":
        return "reason"
    return "act" if signal == "retry" else "fallback"


def route_after_fallback(state: AgentState) -> FallbackRoute:
    """downgrade (another model tier) → reason; anything else → finish."""
    return "reason" if state.get("signal") == "downgrade" else "finish"


class EdgeInput(TypedDict, total=False):
    """All an edge reads. LangGraph builds an edge's input from the channels its parameter's
    type names: this copies one channel per routing decision instead of the whole state."""

    signal: Signal


class _Edge(RunnableCallable):
    """A routing function as LangGraph's path runnable, run as a child run (a callback run
    and a task of its own, as LangGraph runs every traced function) only when a callback
    handler can see it. With no handlers (no tracing, no event stream) nobody could, and
    with only handlers that drop edge runs (`ignores_edge_runs`: LangSmith in `light`
    payloads) they would be dropped; then the edge is a plain call, ~11 times a run."""

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if config is not None and self.afunc is not None and _unwatched(config):
            return await self.afunc(input)
        return await super().ainvoke(input, config, **kwargs)


def _unwatched(config: RunnableConfig) -> bool:
    """Whether no callback handler of `config` wants an edge run."""
    callbacks = config.get("callbacks")
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks
    return all(getattr(h, "ignores_edge_runs", False) for h in handlers or ())


def _inline(route: Callable[[AgentState], str]) -> _Edge:
    """The edge as a coroutine (LangGraph runs a sync edge function in a worker thread, a
    thread hop per routing decision that costs more CPU than the decision itself), wrapped
    in `_Edge` so that it is a child run only for a handler that can see it."""

    async def edge(state: EdgeInput) -> str:
        return route(cast(AgentState, state))

    edge.__name__ = edge.__qualname__ = route.__name__
    return _Edge(None, edge, name=route.__name__, trace=True)


_SIGNAL = ["signal"]


def read_signal(config: RunnableConfig) -> Any:
    """What LangGraph's reader of an edge's input gives (`{"signal": …}`, the state with
    the step's own writes applied), without its cost: that reader copies every channel of
    the state (28 keys, 34 channels) to read one. A node writes `signal` at most once a
    step, so the fresh value is the step's own write if there is one, else the value from
    before the step. Anything unusual (not one write, a reader LangGraph laid out
    differently) is left to LangGraph's own reader."""
    read = config["configurable"][CONFIG_KEY_READ]
    task = read.args[3] if isinstance(read, functools.partial) and len(read.args) == 4 else None
    writes = getattr(task, "writes", None) if read.func is local_read else None
    if writes is None:
        return read(_SIGNAL, True)
    found = [value for channel, value in writes if channel == "signal"]
    if not found:
        return read(_SIGNAL, False)
    if len(found) == 1:
        return {"signal": found[0]}
    return read(_SIGNAL, True)


def _edge_readers(compiled: CompiledStateGraph[Any, Any, Any, Any]) -> list[dict[str, Any]]:
    """The keyword arguments of every node writer that reads state for an edge (those
    holding a `reader`): where LangGraph keeps each conditional edge's reader."""
    return [
        kwargs
        for node in compiled.nodes.values()
        for writer in node.writers
        if isinstance(kwargs := getattr(writer, "kwargs", None), dict) and "reader" in kwargs
    ]


def _light_edges(compiled: CompiledStateGraph[Any, Any, Any, Any]) -> None:
    """Each conditional edge reads `signal` through `read_signal`: once per routing
    decision, ~12 a run. The edges themselves, their names and runs, are unchanged."""
    for kwargs in _edge_readers(compiled):
        reader = kwargs["reader"]
        if (
            isinstance(reader, functools.partial)
            and reader.keywords.get("select") == _SIGNAL
            and reader.keywords.get("fresh") is True
            and reader.keywords.get("mapper") is None
        ):
            kwargs["reader"] = read_signal


class _AgentGraph(StateGraph[AgentChannels, AgentContext, AgentChannels, AgentChannels]):
    """The agent's `StateGraph`: compiled with light edge readers (`_light_edges`), as a
    `FlatStateGraph` (its state read and written as `AgentState`)."""

    def compile(self, *args: Any, **kwargs: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
        compiled = super().compile(*args, **kwargs)
        _light_edges(compiled)
        compiled.__class__ = FlatStateGraph
        return compiled


def edge_readers_are_light(compiled: CompiledStateGraph[Any, Any, Any, Any]) -> bool:
    """Whether every conditional edge of a compiled agent graph reads `signal` alone."""
    readers = [kwargs["reader"] for kwargs in _edge_readers(compiled)]
    return bool(readers) and all(r is read_signal for r in readers)


ContextProvider = Callable[[], Awaitable[AgentContext]]
"""Builds (or returns the cached) run context when the caller passed none."""
Node = TypeVar("Node", bound=Callable[..., Awaitable[dict[str, Any]]])

_NO_CONTEXT = (
    "the agent graph ran without its run context (runtime.context is {found}). Use a "
    "keel.Agent's graph (agent.graph / agent.compile(...)), which builds it, or pass "
    "context= from keel.runtime.build_context"
)


def _in_context(node: Node, provide: ContextProvider | None, *, starts: bool = False) -> Node:
    """`node`, with the provider's context when the caller passed no `AgentContext`.

    `starts` (for `reason`): fill in the run-level keys on the first step of a run started
    without Keel's runtime (a no-op for every other step). The node reads and returns
    `AgentState`, flat; the wrapper flattens the channels' state for it and folds its update
    (`keel.types.AgentChannels`). One wrapper does all of it, so a node's call awaits through
    one frame more than the node's own, not two.
    """

    @functools.wraps(node)
    async def run(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        if not isinstance(runtime.context, AgentContext):
            if provide is None:
                raise UsageError(_NO_CONTEXT.format(found=type(runtime.context).__name__))
            runtime = runtime.override(context=await provide())
        state = cast(AgentState, flat(state))
        start = start_update(state, runtime.context) if starts else None
        if not start:
            return fold(await node(state, runtime))
        update = await node(with_start(state, start), runtime)
        messages = [*start.get("messages", []), *update.get("messages", [])]
        return fold({**start, **update, **({"messages": messages} if messages else {})})

    return cast(Node, run)


def build_agent_graph(
    context: ContextProvider | None = None,
) -> StateGraph[AgentChannels, AgentContext, AgentChannels, AgentChannels]:
    """The uncompiled agent graph; compile it with a checkpointer to run it.

    `context`: how to get the run context when a run is given none (`keel.Agent` passes
    one built from the definition); without it such a run fails with a clear `UsageError`.
    """
    graph = _AgentGraph(AgentChannels, context_schema=AgentContext)
    # Each node reads the whole state: saying so spares LangGraph inferring it from the
    # node's first annotation (resolving every key of its schema once per node).
    nodes = {
        "reason": cost_controlled(reason),
        "act": act,
        "observe": observe,
        "fallback": fallback,
        "finish": finish,
    }
    for name, node in nodes.items():
        node = _in_context(node, context, starts=name == "reason")
        graph.add_node(name, cast(Any, node), input_schema=AgentChannels)
    graph.add_edge(START, "reason")
    graph.add_conditional_edges(
        "reason",
        _inline(route_after_reason),
        {"act": "act", "reason": "reason", "finish": "finish", "fallback": "fallback"},
    )
    graph.add_conditional_edges(
        "act", _inline(route_after_act), {"reason": "reason", "observe": "observe"}
    )
    graph.add_conditional_edges(
        "observe",
        _inline(route_after_observe),
        {"reason": "reason", "act": "act", "fallback": "fallback"},
    )
    graph.add_conditional_edges(
        "fallback", _inline(route_after_fallback), {"reason": "reason", "finish": "finish"}
    )
    graph.add_edge("finish", END)
    return graph
