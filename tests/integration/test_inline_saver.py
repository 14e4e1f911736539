"""The inline Postgres saver stores and loads what LangGraph's own saver does, without a
worker thread."""

from __future__ import annotations

import asyncio
import operator
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph

from checkpoints import open_storage
from checkpoints.inline import InlinePostgresSaver


class State(TypedDict):
    items: Annotated[list[str], operator.add]
    count: int
    note: dict[str, Any]
    label: str | None


def _graph() -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("first", lambda s: {"items": ["a"], "count": s["count"] + 1})
    graph.add_node("second", lambda s: {"items": ["b", "c"], "note": {"k": [1, 2.5, None]}})
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph


async def _run(saver: AsyncPostgresSaver) -> tuple[Any, list[Any], Any]:
    """Run the graph on a fresh thread; its state, history and one tuple's pending writes."""
    app = _graph().compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": uuid.uuid4().hex}}
    await app.ainvoke({"items": [], "count": 0, "note": {}, "label": "x"}, config)
    latest = await saver.aget_tuple(config)
    assert latest is not None
    await saver.aput_writes(latest.config, [("items", ["late"]), ("label", None)], "task-1")
    loaded = await saver.aget_tuple(config)
    assert loaded is not None
    history = [s.values async for s in app.aget_state_history(config)]
    return (await app.aget_state(config)).values, history, loaded.pending_writes


async def test_same_rows_as_langgraph_saver_and_no_thread_hop(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counting(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", repr(func)))
        return await real_to_thread(func, *args, **kwargs)

    async with open_storage(postgres_url) as storage:
        assert isinstance(storage.saver, InlinePostgresSaver)
        monkeypatch.setattr(asyncio, "to_thread", counting)
        inline = await _run(storage.saver)
        assert hops == [], f"the inline saver used a worker thread for {hops}"
        stock = await _run(AsyncPostgresSaver(storage.pool))
        assert hops, "LangGraph's saver hops to a thread (else this test checks nothing)"
    values, history, pending = inline
    assert values == {
        "items": ["a", "b", "c"],
        "count": 1,
        "note": {"k": [1, 2.5, None]},
        "label": "x",
    }
    assert inline == stock
    assert [(task, channel, value) for task, channel, value in pending] == [
        ("task-1", "items", ["late"]),
        ("task-1", "label", None),
    ]
    assert len(history) == 4
