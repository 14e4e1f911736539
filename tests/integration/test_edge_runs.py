"""A routing decision is a child run only for a callback handler that can see it.

LangGraph runs every traced function as a callback run with a task of its own; the agent's
edges decide ~11 times a run. With no handler, or only handlers that drop edge runs
(`ignores_edge_runs`: LangSmith at light payloads), an edge is a plain call; any other
handler (an event stream, full payloads, the caller's own) still gets every edge run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import HumanMessage

from keel.config import Settings
from keel.runtime import open_agent
from tests.sales_truth import SALES_QUESTION

EDGES = {"route_after_reason", "route_after_act"}


class ChainNames(AsyncCallbackHandler):
    """Records the name of every chain run it is told of."""

    def __init__(self, *, ignores_edge_runs: bool) -> None:
        self.ignores_edge_runs = ignores_edge_runs
        self.names: list[str | None] = []

    async def on_chain_start(
        self, serialized: Any, inputs: Any, *, name: str | None = None, **kwargs: Any
    ) -> None:
        self.names.append(name)


async def _run(settings: Settings, handler: ChainNames, thread: str) -> dict[str, Any]:
    async with open_agent(settings) as agent:
        state = await agent.graph.ainvoke(
            {"messages": [HumanMessage(SALES_QUESTION)]},
            {"configurable": {"thread_id": thread}, "callbacks": [handler]},
            context=agent.context,
        )
        history = [
            s.next
            async for s in agent.graph.aget_state_history({"configurable": {"thread_id": thread}})
        ]
    return {"answer": state["answer"], "path": history}


@pytest.mark.asyncio
async def test_edges_are_runs_only_for_handlers_that_want_them(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(model="scripted:sales")
    watching, ignoring = ChainNames(ignores_edge_runs=False), ChainNames(ignores_edge_runs=True)
    seen = await _run(settings, watching, "watched")
    unseen = await _run(settings, ignoring, "unwatched")

    assert set(watching.names) >= EDGES
    assert not EDGES & set(ignoring.names)
    assert {"reason", "act", "finish"} <= set(ignoring.names)  # the nodes are still runs
    assert unseen == seen  # the same answer, along the same steps
