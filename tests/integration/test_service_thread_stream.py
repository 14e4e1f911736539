"""The SDK's thread-centric streaming (`client.threads.stream`) against `keel serve`.

A run started by `run.start`, its output, the thread's event stream (lifecycle, values,
updates, with growing `seq`), a reconnect with `since`, an interrupt answered with
`run.respond`, and what is not served answering 501/422 with its name (never 404).
In-process on SQLite and Postgres, and on a worker (events through Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from langgraph_sdk import get_client

from keel.config import Settings
from keel.tools import default_tools
from keel.tools.registry import ToolRegistry
from tests.integration.service_server import (
    ask_human,
    running_server,
    sales_server_on,
    tool_once_model,
    workers,
)
from tests.sales_truth import SALES_QUESTION

USER: dict[str, Any] = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
CHANNELS = ["lifecycle", "input", "values", "updates", "checkpoints"]


@pytest.fixture(params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[str]:
    with sales_server_on(request.param, settings_factory, tmp_path, "keel_thread_stream") as url:
        yield url


async def _until_ended(events: Any, until: str = "completed") -> list[dict[str, Any]]:
    """Events of a (never-ending) thread stream up to the run's lifecycle `until`."""
    seen: list[dict[str, Any]] = []
    async for event in events:
        seen.append(event)
        if event["method"] == "lifecycle" and event["params"]["data"]["event"] == until:
            return seen
    raise AssertionError(f"the stream ended before {until}: {seen[-3:]}")


async def _raw_events(url: str, thread_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """`POST …/stream/events` read as plain SSE, until the run completes."""

    async def parse() -> Any:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            http.stream("POST", f"/threads/{thread_id}/stream/events", json=body) as answer,
        ):
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    yield orjson.loads(line[6:])

    return await asyncio.wait_for(_until_ended(parse()), 30)


async def _run_and_replay(url: str) -> None:
    async with (
        get_client(url=url, api_key=None) as client,
        client.threads.stream(assistant_id="agent") as thread,
    ):
        started = await thread.run.start(input=USER)
        output = await asyncio.wait_for(thread.output, 60)
        assert "Their total revenue was $" in str(output["outcome"]["output"])
        run = await client.runs.get(thread.thread_id, started["run_id"])
        assert run["status"] == "success"

        events = await asyncio.wait_for(_until_ended(thread.subscribe(CHANNELS)), 30)
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs)), "seq grows, one per event"
        assert all(e["type"] == "event" and e["params"]["namespace"] == [] for e in events)
        assert events[0]["method"] == "lifecycle"
        assert events[0]["params"]["data"]["event"] == "started"
        values = [e["params"]["data"] for e in events if e["method"] == "values"]
        assert values[-1] == output
        nodes = {e["params"]["data"]["node"] for e in events if e["method"] == "updates"}
        assert {"reason", "act", "finish"} <= nodes
        checkpoints = [e["params"]["data"] for e in events if e["method"] == "checkpoints"]
        assert checkpoints and all(c["id"] and isinstance(c["step"], int) for c in checkpoints)
        assert [c.get("parent_id") for c in checkpoints[1:]] == [c["id"] for c in checkpoints[:-1]]
        assert checkpoints[-1]["id"] == state_checkpoint(
            await client.threads.get_state(thread.thread_id)
        )

        # a reconnect after the 5th event gets exactly the rest (the same seqs)
        rest = await _raw_events(url, thread.thread_id, {"channels": CHANNELS, "since": seqs[4]})
        assert [e["seq"] for e in rest] == seqs[5:]
        assert [e["params"]["data"] for e in rest] == [e["params"]["data"] for e in events[5:]]
        # a channel filter: lifecycle only
        only = await _raw_events(url, thread.thread_id, {"channels": ["lifecycle"]})
        assert [e["params"]["data"]["event"] for e in only] == ["started", "completed"]

        # the model's three messages through `thread.messages`, in a second session that
        # re-attaches to the thread (a session's later subscriptions resume after its cursor)
        async with client.threads.stream(thread.thread_id, assistant_id="agent") as again:
            # (its projection feeds a message only while it is iterated)
            streams: list[Any] = []
            three = asyncio.Event()

            async def collect() -> None:
                async for stream in again.messages:
                    streams.append(stream)
                    if len(streams) == 3:
                        three.set()

            reader = asyncio.create_task(collect())
            try:
                await asyncio.wait_for(three.wait(), 30)
                said = [await asyncio.wait_for(m.output, 10) for m in streams]
            finally:
                reader.cancel()
            assert [[c["name"] for c in m.tool_calls] for m in said] == [
                ["sql_query"],
                ["calculator"],
                [],
            ]
            assert "Their total revenue was $" in said[-1].text
            assert {m.node for m in streams} == {"reason"}

        # its tool calls through `thread.tool_calls`, and every channel through `thread.events`
        async with client.threads.stream(thread.thread_id, assistant_id="agent") as tools:
            handles: list[Any] = []
            two = asyncio.Event()

            async def calls() -> None:
                async for handle in tools.tool_calls:
                    handles.append(handle)
                    if len(handles) == 2:
                        two.set()

            reader = asyncio.create_task(calls())
            try:
                await asyncio.wait_for(two.wait(), 30)
                outputs = [await asyncio.wait_for(h.output, 10) for h in handles]
            finally:
                reader.cancel()
            assert [h.name for h in handles] == ["sql_query", "calculator"]
            assert handles[1].input == {"expression": "95293.7 + 24466.05 + 17704.46"}
            assert outputs[1] == "137464.21"
            every = await asyncio.wait_for(_until_ended(tools.events), 30)
            assert {"lifecycle", "values", "updates", "messages", "tools", "checkpoints"} <= {
                e["method"] for e in every
            }

        # a second run on the thread: the stream goes on with higher seqs
        await thread.run.start(input=USER)
        second = await asyncio.wait_for(
            _until_ended(_after(thread.subscribe(["lifecycle"]), seqs[-1])), 60
        )
        assert second[0]["params"]["data"]["event"] == "started"
        assert min(e["seq"] for e in second) > seqs[-1]


def state_checkpoint(state: Any) -> str:
    return str(state["checkpoint"]["checkpoint_id"])


async def _after(events: Any, seq: int) -> Any:
    async for event in events:
        if event["seq"] > seq:
            yield event


async def test_a_run_by_command_and_the_threads_events(server: str) -> None:
    await _run_and_replay(server)


async def test_an_interrupt_answered_with_run_respond(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        model="scripted:echo", checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}"
    )
    registry = ToolRegistry.of([*default_tools(), ask_human])
    model = tool_once_model("ask_human", {"question": "May I?"})
    with running_server(settings, model=model, tools=registry) as url:
        async with (
            get_client(url=url, api_key=None) as client,
            client.threads.stream(assistant_id="agent") as thread,
        ):
            await thread.run.start(input=USER)
            for _ in range(200):
                if thread.interrupted:
                    break
                await asyncio.sleep(0.05)
            assert thread.interrupted
            assert [i["value"] for i in thread.interrupts] == [{"question": "May I?"}]
            await thread.run.respond("yes, go ahead")
            output = await asyncio.wait_for(thread.output, 30)
            assert output["outcome"]["output"] == "done: the human said: yes, go ahead"
            async with httpx.AsyncClient(base_url=url) as http:
                stale = await http.post(
                    f"/threads/{thread.thread_id}/commands",
                    json={
                        "id": 9,
                        "method": "input.respond",
                        "params": {"interrupt_id": "nope", "namespace": [], "response": 1},
                    },
                )
                assert stale.status_code == 404
                assert stale.json()["error"] == "no_such_interrupt"


async def test_what_is_not_served_is_named(sales_server: str) -> None:
    async with httpx.AsyncClient(base_url=sales_server) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        subscribe = await http.post(
            f"/threads/{tid}/commands",
            json={"id": 1, "method": "subscription.subscribe", "params": {"channels": ["values"]}},
        )
        assert subscribe.status_code == 501
        refusal = subscribe.json()
        assert (
            refusal["error"] == "not_supported" and "subscription.subscribe" in refusal["message"]
        )
        odd = await http.post(f"/threads/{tid}/commands", json={"id": 2, "method": "dance"})
        assert odd.status_code == 422 and odd.json()["error"] == "unknown_command"
        bad = await http.post(f"/threads/{tid}/commands", json={"method": "run.start"})
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_argument"
        odd_channel = await http.post(
            f"/threads/{tid}/stream/events", json={"channels": ["values", "colours"]}
        )
        assert odd_channel.status_code == 422
        assert "unknown channels: 'colours'" in odd_channel.json()["message"]
        nothing = await http.post(f"/threads/{tid}/stream/events", json={"channels": []})
        assert nothing.status_code == 422
        missing = await http.post("/threads/nobody/stream/events", json={"channels": ["values"]})
        assert missing.status_code == 404


@pytest.mark.postgres
@pytest.mark.redis
async def test_thread_streaming_on_a_worker(distributed: dict[str, Any]) -> None:
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 2):
        await _run_and_replay(url)


async def test_state_commands(sales_server: str) -> None:
    """`state.get`, `state.listCheckpoints`, `state.fork` and `agent.getTree`, through the
    SDK's own command call, agree with the thread's REST state and history."""
    async with (
        get_client(url=sales_server, api_key=None) as client,
        client.threads.stream(assistant_id="agent") as thread,
    ):
        await thread.run.start(input=USER)
        output = await asyncio.wait_for(thread.output, 60)
        tid = thread.thread_id
        state = await client.threads.get_state(tid)
        got = await thread._send_command("state.get", {"namespace": []})
        assert got["values"] == output
        assert got["checkpoint"]["id"] == state["checkpoint"]["checkpoint_id"]
        some = await thread._send_command("state.get", {"namespace": [], "keys": ["question"]})
        assert some["values"] == {"question": SALES_QUESTION}

        history = await client.threads.get_history(tid, limit=4)
        listed = await thread._send_command("state.listCheckpoints", {"limit": 4})
        ids = [c["id"] for c in listed["checkpoints"]]
        assert ids == [h["checkpoint"]["checkpoint_id"] for h in history]
        assert [c["step"] for c in listed["checkpoints"]] == [
            (h["metadata"] or {})["step"] for h in history
        ]
        older = await thread._send_command("state.listCheckpoints", {"limit": 2, "before": ids[1]})
        assert [c["id"] for c in older["checkpoints"]] == ids[2:4]

        tree = await thread._send_command("agent.getTree", {})
        assert tree["tree"] == {
            "namespace": [],
            "status": "completed",
            "graph_name": "agent",
            "children": [],
        }

        # a fork from the first checkpoint, with a new question: a new run on the thread
        first = (await client.threads.get_history(tid, limit=100))[-1]["checkpoint"]
        forked = await thread._send_command(
            "state.fork",
            {"checkpoint_id": first["checkpoint_id"], "input": {"question": "What is 2+2?"}},
        )
        assert forked["thread_id"] == tid
        joined = await client.runs.join(tid, forked["run_id"])
        assert joined["question"] == "What is 2+2?"
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await thread._send_command("state.get", {"namespace": ["child"]})
        assert refused.value.response.json()["error"] == "no_such_namespace"
