"""One interface for every graph the service serves: a Keel agent or a plain LangGraph graph.

The executors and routes use `ServedGraph` and never reach into a graph's internals, so a run
of a user's `StateGraph` meets the same threads, runs, streaming, queue and workers, tenants,
crons, webhooks, store, metrics and logs as a run of a Keel agent.

```python
served = graphs.get("support")                 # keel.server.graphs.ServedGraphs
bound = await served.bind(Applied.of(assistant_config, run_config))   # 422 for what cannot apply
snapshot = await bound.drive(segment, send)     # one stretch of a run
```
Two implementations: `served_keel.KeelGraph` (through its `AgentRuntime`, all of Keel's
machinery) and `served_plain.PlainGraph` (a compiled graph or a factory, compiled with the
service's checkpointer and store).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.types import StateSnapshot

from keel.runtime.driver import OnChunk, Segment
from keel.server.auth import Principal

__all__ = ["Applied", "BoundGraph", "ServedGraph", "merge_config"]

CONFIG_KEYS = frozenset({"configurable", "tags", "metadata", "recursion_limit"})
"""Top-level keys of an assistant's or a run's `config` a graph can take."""


def merge_config(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, one level deep for `configurable` and `metadata`."""
    merged: dict[str, Any] = {**base}
    for key, value in over.items():
        if key in ("configurable", "metadata") and isinstance(value, Mapping):
            merged[key] = {**(merged.get(key) or {}), **value}
        elif key == "tags" and isinstance(value, Sequence):
            merged[key] = list(dict.fromkeys([*(merged.get(key) or []), *value]))
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Applied:
    """The `config` and `context` a run executes with: its assistant's, then its own."""

    config: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        assistant_config: Mapping[str, Any] | None,
        assistant_context: Mapping[str, Any] | None,
        run_config: Mapping[str, Any] | None = None,
        run_context: Mapping[str, Any] | None = None,
    ) -> Applied:
        return cls(
            merge_config(assistant_config or {}, run_config or {}),
            {**(assistant_context or {}), **(run_context or {})},
        )

    def to_json(self) -> dict[str, Any]:
        return {"config": dict(self.config), "context": dict(self.context)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Applied:
        data = data or {}
        return cls(dict(data.get("config") or {}), dict(data.get("context") or {}))

    @property
    def empty(self) -> bool:
        return not self.config and not self.context


class BoundGraph(Protocol):
    """A served graph with one run's `Applied` config: what executes the run."""

    async def start_input(self, payload: dict[str, Any], *, tenant: str, run_id: str) -> Any:
        """What a new run on a thread sends the graph, from the request's `input`."""
        ...

    async def drive(
        self, segment: Segment, principal: Principal, on_chunk: OnChunk | None
    ) -> StateSnapshot:
        """Run one segment to the end or an interrupt; the thread's state then."""
        ...


class ServedGraph(Protocol):
    """A graph of the project as the service serves it."""

    graph_id: str
    kind: Literal["keel", "graph"]
    description: str

    async def bind(self, applied: Applied) -> BoundGraph:
        """This graph with a run's config and context; `Unprocessable` naming what cannot apply."""
        ...

    async def check(self, applied: Applied) -> None:
        """422 naming the field when `applied` cannot apply to this graph."""
        ...

    async def nodes(self) -> set[str]:
        """The graph's node names (what `command.goto` and `as_node` may name)."""
        ...

    async def snapshot(
        self, thread_id: str, checkpoint: Mapping[str, Any] | None = None
    ) -> StateSnapshot:
        """The thread's state (at `checkpoint`: `checkpoint_id`, `checkpoint_ns`, …)."""
        ...

    def history(
        self,
        thread_id: str,
        *,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int,
    ) -> AsyncIterator[StateSnapshot]:
        """The thread's past states, newest first."""
        ...

    async def update_state(
        self,
        thread_id: str,
        values: Any,
        *,
        as_node: str | None,
        checkpoint: Mapping[str, Any] | None,
    ) -> RunnableConfig:
        """Write values into the thread's state as if `as_node` returned them."""
        ...

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints (and, for a Keel agent, its journal rows)."""
        ...

    async def delete_runs(self, thread_id: str, run_ids: list[str]) -> None:
        """Delete the checkpoints these runs wrote (a rollback)."""
        ...

    async def drawable(self, xray: int | bool) -> dict[str, Any]:
        """LangGraph's drawable graph (`Graph.to_json()`)."""
        ...

    async def schemas(self) -> dict[str, Any]:
        """JSON Schemas of input, output, state, config and context (None: not expressible)."""
        ...

    async def subgraphs(self, namespace: str | None, recurse: bool) -> dict[str, Any]:
        """Schemas of the graph's subgraphs by namespace."""
        ...
