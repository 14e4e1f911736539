"""Which graph a run executes, and with which config and context.

A run names an assistant (its id, or a graph id for that graph's default assistant); it runs
that assistant's graph with the assistant's `config` and `context`, then its own on top.
What cannot apply to the graph is a 422 naming the field, before the run is admitted.
"""

from __future__ import annotations

from keel.server.assistants import Assistants
from keel.server.auth import Principal
from keel.server.errors import Conflict, Unprocessable
from keel.server.graphs import ServedGraphs
from keel.server.schemas import RunCreate
from keel.server.served import Applied, ServedGraph
from keel.server.store import Store, ThreadRecord

__all__ = ["Target", "claim_thread", "resolve_target"]

Target = tuple[str, ServedGraph, Applied, str]
"""A run's assistant id, graph, applied config and context, and graph id."""


async def resolve_target(
    assistants: Assistants, graphs: ServedGraphs, principal: Principal, body: RunCreate
) -> Target:
    """The run's assistant (404), its graph and what it runs with (422)."""
    assistant = await assistants.get(body.assistant_id, principal.tenant_id)
    served = graphs.get(assistant.graph_id)
    if served is None:
        raise Unprocessable(
            f"assistant {assistant.assistant_id} is of graph {assistant.graph_id!r}, which this "
            f"service does not serve (graphs: {', '.join(graphs.listed)})"
        )
    applied = Applied.of(assistant.config, assistant.context, body.config, body.context)
    await served.check(applied)
    return assistant.assistant_id, served, applied, assistant.graph_id


async def claim_thread(
    store: Store, graphs: ServedGraphs, thread: ThreadRecord, target: Target
) -> None:
    """The thread's state is the run's graph's: 409 when it holds another graph's state."""
    assistant_id, served, _, graph_id = target
    meta = thread.metadata
    if meta.get("graph_id") == graph_id and meta.get("assistant_id") == assistant_id:
        return
    current = graphs.for_thread(meta)
    if current is not served and (await current.snapshot(thread.key)).created_at:
        raise Conflict(
            f"thread {thread.thread_id} holds the state of graph {meta.get('graph_id')!r}; "
            f"run graph {graph_id!r} on a new thread"
        )
    metadata = {**meta, "graph_id": graph_id, "assistant_id": assistant_id}
    await store.update_thread(thread.key, metadata=metadata)
