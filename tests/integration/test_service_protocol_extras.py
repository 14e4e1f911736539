"""Batch runs, the assistant's graph and schemas, thread copy and count, through the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError, RateLimitError, UnprocessableEntityError

from keel.config import Settings
from keel.server.admin import create_key
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools import default_tools
from keel.tools.registry import ToolContext, ToolRegistry, tool
from tests.integration.service_server import ask_human, nap, running_server, tool_once_model
from tests.sales_truth import SALES_QUESTION

USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
KEPT = {"assistant_id": "agent", "input": USER, "on_completion": "keep"}


def _napping(settings: Settings) -> Any:
    """A server whose runs nap 0.8 s in a tool: still going when the test looks."""
    registry = ToolRegistry.of([*default_tools(), nap])
    return running_server(settings, model=tool_once_model("nap", {"seconds": 0.8}), tools=registry)


# batch --------------------------------------------------------------------------------


async def test_a_batch_of_runs_all_finish(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        runs = await client.runs.create_batch([KEPT, KEPT, {**KEPT, "metadata": {"n": 3}}])
        assert len(runs) == 3 and runs[2]["metadata"] == {"n": 3}
        assert len({r["run_id"] for r in runs}) == len({r["thread_id"] for r in runs}) == 3
        assert all(r["status"] in ("pending", "running") for r in runs)
        for run in runs:
            values = await client.runs.join(run["thread_id"], run["run_id"])
            assert "Their total revenue was $" in values["outcome"]["output"]
            done = await client.runs.get(run["thread_id"], run["run_id"])
            assert done["status"] == "success"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"assistant_id": "agent", "input": {}}, "runs[1]: input needs 'messages'"),
        ({"input": USER}, "body.1.assistant_id"),
        ({**KEPT, "thread_id": "t-1"}, "body.1.thread_id"),
        ({**KEPT, "stream_mode": "nope"}, "body.1.stream_mode"),
    ],
)
async def test_a_bad_batch_item_refuses_the_whole_batch(
    sales_server: str, bad: dict[str, Any], says: str
) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        with pytest.raises(UnprocessableEntityError) as refused:
            await client.runs.create_batch([KEPT, bad, KEPT])
        assert says in refused.value.response.json()["message"]
        await asyncio.sleep(0.3)
        assert await client.threads.search() == []  # no run started, so no thread kept


async def test_empty_and_unknown_assistant_batches(sales_server: str) -> None:
    async with httpx.AsyncClient(base_url=sales_server) as http:
        empty = await http.post("/runs/batch", json=[])
        assert empty.status_code == 422 and "body" in empty.json()["message"]
        other = await http.post("/runs/batch", json=[KEPT, {**KEPT, "assistant_id": "x"}])
        assert other.status_code == 404 and other.json()["message"].startswith("runs[1]:")
        assert (await http.post("/threads/search", json={})).json() == []


async def test_a_batch_past_the_queue_bound_is_refused_before_any_run_starts(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        service={"max_in_flight": 1, "max_queued": 2},
    )
    with _napping(settings) as url:
        async with get_client(url=url, api_key=None) as client:
            with pytest.raises(RateLimitError) as refused:
                await client.runs.create_batch([KEPT] * 3)
            assert int(refused.value.response.headers["Retry-After"]) >= 1
            assert "room for 2" in refused.value.response.json()["message"]
            assert await client.threads.search() == []
            runs = await client.runs.create_batch([KEPT] * 2)
            for run in runs:
                values = await client.runs.join(run["thread_id"], run["run_id"])
                assert values["outcome"]["output"] == "done: slept 0.8"


async def test_a_batch_past_the_tenant_rate_starts_none_of_its_runs(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        rate_limits={"tenant_runs_per_minute": 2},
    )
    with _napping(settings) as url:
        async with get_client(url=url, api_key=None) as client:
            with pytest.raises(RateLimitError) as refused:
                await client.runs.create_batch([KEPT] * 3)
            assert int(refused.value.response.headers["Retry-After"]) >= 1
            await asyncio.sleep(1.2)  # long enough for a run that was not cancelled to end
            kept = await client.threads.search()
            assert len(kept) == 2  # the two admitted before the refusal, both cancelled
            for thread in kept:
                [run] = await client.runs.list(thread["thread_id"])
                assert run["status"] == "interrupted"


# assistants ---------------------------------------------------------------------------


async def test_the_assistant_graph_and_schemas(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        graph = await client.assistants.get_graph("agent")
        ids = {n["id"] for n in graph["nodes"]}
        assert {"reason", "act", "observe", "fallback", "finish"} <= ids
        edges = {(e["source"], e["target"]) for e in graph["edges"]}
        assert ("__start__", "reason") in edges and ("act", "observe") in edges
        assert ("reason", "fallback") in edges and ("finish", "__end__") in edges
        assert await client.assistants.get_graph("agent", xray=True) == graph
        schemas = await client.assistants.get_schemas("agent")
        assert schemas["graph_id"] == "agent"
        for kind in ("input_schema", "output_schema", "state_schema"):
            properties = schemas[kind]["properties"]  # type: ignore[literal-required]
            assert {"messages", "question", "outcome"} <= set(properties)
        assert schemas["context_schema"] is None  # built by the server, never sent
        for call in (client.assistants.get_graph("nope"), client.assistants.get_schemas("nope")):
            with pytest.raises(NotFoundError):
                await call
    async with httpx.AsyncClient(base_url=sales_server) as http:
        bad = await http.get("/assistants/agent/graph", params={"xray": "deep"})
        assert bad.status_code == 422 and "xray" in bad.json()["message"]


# threads ------------------------------------------------------------------------------


async def test_a_copied_thread_has_the_same_state_and_goes_its_own_way(
    sales_server: str,
) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        tid = (await client.threads.create(metadata={"team": "sales"}))["thread_id"]
        await client.runs.wait(tid, "agent", input=USER)
        source_history = await client.threads.get_history(tid, limit=100)
        copy = await client.threads.copy(tid)
        assert copy is not None
        cid = copy["thread_id"]
        assert cid != tid and copy["metadata"]["team"] == "sales"
        assert copy["values"] == (await client.threads.get_state(tid))["values"]
        copied_history = await client.threads.get_history(cid, limit=100)
        assert [h["checkpoint"]["checkpoint_id"] for h in copied_history] == [
            h["checkpoint"]["checkpoint_id"] for h in source_history
        ]
        assert {h["checkpoint"]["thread_id"] for h in copied_history} == {cid}
        # the copy runs on; the source does not move
        await client.runs.wait(cid, "agent", input={"question": "And again?"})
        assert len(await client.threads.get_history(cid, limit=100)) > len(source_history)
        assert await client.threads.get_history(tid, limit=100) == source_history
        assert sorted(t["thread_id"] for t in await client.threads.search()) == sorted([tid, cid])
        with pytest.raises(NotFoundError):
            await client.threads.copy("no-such-thread")


async def test_a_copied_interrupted_thread_resumes_on_its_own(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        model="scripted:echo", checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}"
    )
    registry = ToolRegistry.of([*default_tools(), ask_human])
    model = tool_once_model("ask_human", {"question": "May I?"})
    with running_server(settings, model=model, tools=registry) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            await client.runs.wait(tid, "agent", input=USER)
            before = await client.threads.get_state(tid)
            copy = await client.threads.copy(tid)
            assert copy is not None
            assert copy["status"] == "interrupted"
            assert copy["interrupts"] and copy["values"]
            resumed = await client.runs.wait(
                copy["thread_id"], "agent", command={"resume": "yes on the copy"}
            )
            assert resumed["outcome"]["output"] == "done: the human said: yes on the copy"
            assert (await client.threads.get(tid))["status"] == "interrupted"
            assert await client.threads.get_state(tid) == before
            assert before["interrupts"] and before["next"]


def _pay_and_ask(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
    """Pays and asks a human in one step; then answers with both results."""
    if isinstance(messages[-1], ToolMessage):
        last_ai = max(i for i, m in enumerate(messages) if isinstance(m, AIMessage))
        return AIMessage(
            content="done: " + " | ".join(str(m.content) for m in messages[last_ai + 1 :])
        )
    return AIMessage(
        content="",
        tool_calls=[
            {"name": "pay", "args": {"amount": 5}, "id": "pay_1"},
            {"name": "ask_human", "args": {"question": "Receipt?"}, "id": "ask_1"},
        ],
    )


async def test_a_copy_does_not_repeat_an_effect_its_source_made(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """`pay` completes in the step that `ask_human` interrupts, so only the journal knows it
    ran; resuming the copy (and then the source) must reuse that record, not pay again."""
    paid: list[str] = []

    @tool
    def pay(amount: int, ctx: ToolContext) -> str:
        """Pay an amount (a side effect)."""
        paid.append(ctx.idempotency_key)
        return f"paid {amount}"

    settings = settings_factory(
        model="scripted:echo", checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}"
    )
    registry = ToolRegistry.of([*default_tools(), ask_human, pay])
    model = FunctionModel(fn=_pay_and_ask, model_name="scripted:pay-and-ask")
    with running_server(settings, model=model, tools=registry) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            await client.runs.wait(tid, "agent", input=USER)
            assert paid == [f"{tid}:pay_1"]
            copy = await client.threads.copy(tid)
            assert copy is not None and copy["status"] == "interrupted"
            cid = copy["thread_id"]
            resumed = await client.runs.wait(cid, "agent", command={"resume": "on the copy"})
            assert resumed["outcome"]["output"] == "done: paid 5 | the human said: on the copy"
            assert paid == [f"{tid}:pay_1"], "the copy paid again"
            resumed = await client.runs.wait(tid, "agent", command={"resume": "on the source"})
            assert resumed["outcome"]["output"] == "done: paid 5 | the human said: on the source"
            assert paid == [f"{tid}:pay_1"]


async def test_count_threads(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        assert await client.threads.count() == 0
        for team in ("sales", "sales", "ops"):
            await client.threads.create(metadata={"team": team})
        assert await client.threads.count() == 3
        assert await client.threads.count(metadata={"team": "sales"}) == 2
        assert await client.threads.count(status="busy") == 0
        with pytest.raises(UnprocessableEntityError):
            await client.threads.count(values={"answer": "x"})


async def test_copy_and_count_stay_inside_the_tenant(secured: Settings) -> None:
    acme = (await create_key(secured, "acme", "member"))["api_key"]
    globex = (await create_key(secured, "globex", "member"))["api_key"]
    with running_server(secured) as url:
        async with get_client(url=url, api_key=acme) as a, get_client(url=url, api_key=globex) as g:
            tid = (await a.threads.create())["thread_id"]
            await a.runs.wait(tid, "agent", input=USER)
            with pytest.raises(NotFoundError):
                await g.threads.copy(tid)
            assert await g.threads.count() == 0
            copy = await a.threads.copy(tid)
            assert copy is not None
            assert (await a.threads.get_state(copy["thread_id"]))["values"]["tenant"] == "acme"
            with pytest.raises(NotFoundError):
                await g.threads.get(copy["thread_id"])
            assert await a.threads.count() == 2 and await g.threads.count() == 0
