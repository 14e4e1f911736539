"""Stream mode `events` (LangChain's v2 run events) through the official `langgraph-sdk`.

`client.runs.stream(..., stream_mode="events")` gives `events` events, each a v2 event dict
(`on_chain_start` of the graph and of each node, model starts and ends, …); combined with
other modes those come too, and a client that reconnects with `Last-Event-ID` gets exactly
the rest. In-process on SQLite and Postgres, on a worker (events through Redis), and for a
plain graph of a project.
"""

from __future__ import annotations

import operator
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph_sdk import get_client

from keel.config import Settings
from keel.project import load_project
from keel.runtime.driver import stream_graph
from tests.integration.service_server import running_server, sales_server_on, workers
from tests.sales_truth import SALES_QUESTION

USER: dict[str, Any] = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
AGENT_NODES = {"reason", "act", "finish"}  # act closes a cycle that needs no decision
EVENT_KEYS = {"event", "name", "run_id", "parent_ids", "tags", "metadata", "data"}


@pytest.fixture(params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[str]:
    """`keel serve` with in-process runs, its checkpoints and tables on SQLite or Postgres."""
    with sales_server_on(request.param, settings_factory, tmp_path, "keel_events") as url:
        yield url


def _check_events(events: list[dict[str, Any]], nodes: set[str]) -> None:
    """Whole v2 events: the graph's start first, each node's start, ends matching starts."""
    assert events, "no events"
    assert all(set(e) >= EVENT_KEYS for e in events), events[0]
    first = events[0]
    assert first["event"] == "on_chain_start" and first["parent_ids"] == []
    root = first["run_id"]
    started = {e["name"] for e in events if e["event"] == "on_chain_start"}
    assert nodes <= started, started
    assert all(root in e["parent_ids"] for e in events[1:] if e["run_id"] != root)
    starts = sorted(e["run_id"] for e in events if e["event"] == "on_chain_start")
    ends = sorted(e["run_id"] for e in events if e["event"] == "on_chain_end")
    assert starts == ends
    # the graph's own stream items are the other modes, not events
    assert not any(e["event"] == "on_chain_stream" and e["run_id"] == root for e in events)


async def _events_and_resume(url: str, nodes: set[str] = AGENT_NODES) -> None:
    async with get_client(url=url, api_key=None) as client:
        alone = [
            p async for p in client.runs.stream(None, "agent", input=USER, stream_mode="events")
        ]
        assert {p.event for p in alone} == {"metadata", "events", "end"}
        _check_events([p.data for p in alone if p.event == "events"], nodes)
        assert any(p.data["event"] == "on_chat_model_end" for p in alone if p.event == "events")

        tid = (await client.threads.create())["thread_id"]
        parts = [
            p
            async for p in client.runs.stream(
                tid, "agent", input=USER, stream_mode=["events", "values"]
            )
        ]
        kinds = [p.event for p in parts]
        assert kinds[0] == "metadata" and kinds[-1] == "end"
        assert "values" in kinds and "events" in kinds
        state = await client.threads.get_state(tid)
        last_values = [p.data for p in parts if p.event == "values"][-1]
        assert last_values == state["values"]
        assert "Their total revenue was $" in str(state["values"]["outcome"]["output"])
        _check_events([p.data for p in parts if p.event == "events"], nodes)

        # a client that lost the connection after the 5th event gets exactly the rest
        run_id = parts[0].data["run_id"]
        rest = [
            p
            async for p in client.runs.join_stream(
                tid, run_id, last_event_id=parts[4].id, stream_mode=["events", "values"]
            )
        ]
        assert [(p.event, p.data) for p in rest] == [(p.event, p.data) for p in parts[5:]]


async def test_events_stream_in_process(server: str) -> None:
    await _events_and_resume(server)


@pytest.mark.postgres
@pytest.mark.redis
async def test_events_stream_on_a_worker(distributed: dict[str, Any]) -> None:
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 2):
        await _events_and_resume(url)


PLAIN = """
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


builder = StateGraph(State)
builder.add_node("first", lambda s: {"log": ["one"]})
builder.add_node("second", lambda s: {"log": ["two"]})
builder.add_edge(START, "first")
builder.add_edge("first", "second")
builder.add_edge("second", END)
graph = builder.compile()
"""


async def test_events_stream_of_a_plain_graph(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    (tmp_path / "plain.py").write_text(textwrap.dedent(PLAIN))
    (tmp_path / "langgraph.json").write_text('{"graphs": {"plain": "./plain.py:graph"}}')
    settings = settings_factory(checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}")
    with running_server(settings, project=load_project(tmp_path / "langgraph.json")) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            parts = [
                p
                async for p in client.runs.stream(
                    tid, "plain", input={"log": []}, stream_mode=["events", "updates"]
                )
            ]
            updates = [p.data for p in parts if p.event == "updates"]
            assert updates == [{"first": {"log": ["one"]}}, {"second": {"log": ["two"]}}]
            _check_events([p.data for p in parts if p.event == "events"], {"first", "second"})


class _State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


async def test_stream_graph_gives_the_same_mode_items_with_events() -> None:
    """Under `astream_events` the other modes' items are exactly what `astream` gives."""
    builder = StateGraph(_State)
    builder.add_node("a", lambda s: {"log": ["a"]})
    builder.add_node("b", lambda s: {"log": ["b"]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    modes = ["updates", "values"]

    async def items(thread: str, wanted: list[str]) -> list[tuple[str, Any]]:
        config: Any = {"configurable": {"thread_id": thread}}
        return [i async for i in stream_graph(graph, {"log": []}, config, stream_mode=wanted)]

    plain = await items("p", modes)
    with_events = await items("e", [*modes, "events"])
    assert [i for i in with_events if i[0] != "events"] == plain
    assert [c for m, c in plain if m == "updates"] == [{"a": {"log": ["a"]}}, {"b": {"log": ["b"]}}]
    assert plain[-1] == ("values", {"log": ["a", "b"]})
    names = {e["name"] for m, e in with_events if m == "events"}
    assert {"a", "b", "LangGraph"} <= names
