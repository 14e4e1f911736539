"""The HTTP API driven by the official `langgraph-sdk` client against a running server."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from keel.config import Settings
from keel.tools import default_tools
from keel.tools.registry import ToolRegistry
from tests.integration.service_server import (
    OPEN_GATES,
    ask_human,
    hold,
    nap,
    running_server,
    tool_once_model,
)
from tests.sales_truth import SALES_QUESTION

USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}


@pytest.fixture
def tool_server(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> Callable[[str, dict[str, Any]], Any]:
    """A server whose model calls one given tool (`nap`, `hold` or `ask_human`), then answers."""

    def make(tool_name: str, args: dict[str, Any]) -> Any:
        settings = settings_factory(
            model="scripted:echo", checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}"
        )
        registry = ToolRegistry.of([*default_tools(), nap, hold, ask_human])
        return running_server(settings, model=tool_once_model(tool_name, args), tools=registry)

    return make


def _answer(values: dict[str, Any]) -> str:
    return str(values["outcome"]["output"])


async def test_assistants_health_and_metrics(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        found = await client.assistants.search()
        assert [a["graph_id"] for a in found] == ["agent"]
        assert (await client.assistants.get("agent"))["assistant_id"] == found[0]["assistant_id"]
        assert await client.assistants.search(graph_id="other") == []
        with pytest.raises(NotFoundError):
            await client.assistants.get("nope")
    async with httpx.AsyncClient(base_url=sales_server) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and "keel_" in metrics.text


async def test_thread_lifecycle(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        thread = await client.threads.create(thread_id="t-life", metadata={"team": "sales"})
        assert thread["thread_id"] == "t-life" and thread["status"] == "idle"
        assert thread["metadata"]["team"] == "sales"
        with pytest.raises(ConflictError):
            await client.threads.create(thread_id="t-life")
        same = await client.threads.create(thread_id="t-life", if_exists="do_nothing")
        assert same["created_at"] == thread["created_at"]
        updated = await client.threads.update("t-life", metadata={"owner": "ann"})
        assert updated["metadata"] == {"team": "sales", "owner": "ann", "graph_id": "agent"}
        assert [t["thread_id"] for t in await client.threads.search(metadata={"owner": "ann"})] == [
            "t-life"
        ]
        empty = await client.threads.get_state("t-life")
        assert empty["values"] == {} and empty["next"] == []
        await client.runs.wait("t-life", "agent", input=USER)
        await client.threads.delete("t-life")
        with pytest.raises(NotFoundError):
            await client.threads.get("t-life")
        with pytest.raises(NotFoundError):
            await client.threads.get_state("t-life")
        # the id is free again and the new thread has no old checkpoints
        await client.threads.create(thread_id="t-life")
        assert (await client.threads.get_state("t-life"))["values"] == {}


async def test_wait_answers_and_state_and_history_follow(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        thread = await client.threads.create()
        tid = thread["thread_id"]
        values = await client.runs.wait(tid, "agent", input=USER)
        assert values["outcome"]["success"] is True
        assert "Their total revenue was $" in _answer(values)
        state = await client.threads.get_state(tid)
        assert state["next"] == [] and state["values"]["outcome"] == values["outcome"]
        assert state["checkpoint"]["thread_id"] == tid and state["checkpoint"]["checkpoint_id"]
        kinds = [m["type"] for m in state["values"]["messages"]]
        assert kinds[0] == "human" and kinds[-1] == "ai" and kinds.count("tool") == 2
        history = await client.threads.get_history(tid, limit=4)
        assert len(history) == 4
        assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
        steps = [h["metadata"]["step"] for h in history]
        assert steps == sorted(steps, reverse=True)
        older = await client.threads.get_history(
            tid, limit=2, before={"checkpoint_id": history[1]["checkpoint"]["checkpoint_id"]}
        )
        assert [h["metadata"]["step"] for h in older] == steps[2:4]
        assert (await client.threads.get(tid))["status"] == "idle"


async def test_update_state_writes_a_new_checkpoint(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        await client.runs.wait(tid, "agent", input=USER)
        before = await client.threads.get_state(tid)
        done = await client.threads.update_state(
            tid, {"answer": "corrected by a person"}, as_node="finish"
        )
        after = await client.threads.get_state(tid)
        assert done["checkpoint"]["checkpoint_id"] == after["checkpoint"]["checkpoint_id"]
        assert after["checkpoint"]["checkpoint_id"] != before["checkpoint"]["checkpoint_id"]
        assert after["values"]["answer"] == "corrected by a person"
        with pytest.raises(UnprocessableEntityError):
            await client.threads.update_state(tid, {"answer": "x"}, as_node="no-such-node")


async def test_stream_sends_metadata_values_updates_and_end(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        parts = [
            p
            async for p in client.runs.stream(
                tid, "agent", input=USER, stream_mode=["values", "updates", "messages-tuple"]
            )
        ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and events[-1] == "end"
    run_id = parts[0].data["run_id"]
    assert parts[-1].data == {"run_id": run_id, "status": "success"}
    nodes = [next(iter(p.data)) for p in parts if p.event == "updates"]
    assert nodes == ["reason", "act", "reason", "act", "reason", "finish"]
    final = [p.data for p in parts if p.event == "values"][-1]
    assert final["outcome"]["success"] is True and final["run_id"] == run_id
    assert any(p.event == "messages" for p in parts)


async def test_background_run_get_join_and_list(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        created = []
        run = await client.runs.create(
            tid, "agent", input=USER, metadata={"tag": "bg"}, on_run_created=created.append
        )
        assert run["status"] in ("pending", "running") and run["metadata"] == {"tag": "bg"}
        assert created == [{"run_id": run["run_id"], "thread_id": tid}]
        values = await client.runs.join(tid, run["run_id"])
        assert values["outcome"]["success"] is True
        assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
        listed = await client.runs.list(tid)
        assert [r["run_id"] for r in listed] == [run["run_id"]]
        with pytest.raises(NotFoundError):
            await client.runs.get(tid, "no-such-run")
        with pytest.raises(NotFoundError):  # it has finished: nothing to cancel (as the reference)
            await client.runs.cancel(tid, run["run_id"])


async def test_stateless_runs_leave_no_thread(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        values = await client.runs.wait(None, "agent", input={"question": SALES_QUESTION})
        assert values["outcome"]["success"] is True
        parts = [p async for p in client.runs.stream(None, "agent", input=USER)]
        assert parts[0].event == "metadata" and parts[-1].event == "end"
        assert parts[-1].data["status"] == "success"
        await asyncio.sleep(0.2)
        assert await client.threads.search() == []


async def test_interrupt_before_then_continue_with_a_command(sales_server: str) -> None:
    async with get_client(url=sales_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        run = await client.runs.create(tid, "agent", input=USER, interrupt_before=["act"])
        await client.runs.join(tid, run["run_id"])
        assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
        assert (await client.threads.get(tid))["status"] == "interrupted"
        assert (await client.threads.get_state(tid))["next"] == ["act"]
        values = await client.runs.wait(tid, "agent", command={"resume": "go on"})
        assert values["outcome"]["success"] is True
        assert (await client.threads.get(tid))["status"] == "idle"
        with pytest.raises(httpx.HTTPStatusError) as refused:  # nothing left to continue
            await client.runs.wait(tid, "agent")
        assert refused.value.response.status_code == 422


async def test_resume_an_interrupt_raised_in_a_tool(tool_server: Any) -> None:
    with tool_server("ask_human", {"question": "May I?"}) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            paused = await client.runs.wait(tid, "agent", input=USER)
            assert paused["__interrupt__"][0]["value"] == {"question": "May I?"}
            thread = await client.threads.get(tid)
            assert thread["status"] == "interrupted"
            state = await client.threads.get_state(tid)
            assert state["interrupts"][0]["value"] == {"question": "May I?"}
            parts = [
                p
                async for p in client.runs.stream(
                    tid, "agent", command={"resume": "yes, go ahead"}, stream_mode="values"
                )
            ]
            final = [p.data for p in parts if p.event == "values"][-1]
            assert final["outcome"]["output"] == "done: the human said: yes, go ahead"
            assert (await client.threads.get(tid))["status"] == "idle"


async def test_cancel_a_running_run(tool_server: Any) -> None:
    with tool_server("nap", {"seconds": 30}) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            run = await client.runs.create(tid, "agent", input=USER)
            await _until_status(client, tid, run["run_id"], "running")
            await client.runs.cancel(tid, run["run_id"], wait=True)
            assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
            assert (await client.threads.get(tid))["status"] == "idle"


async def test_multitask_strategies(tool_server: Any) -> None:
    """Each run waits in its tool until the test opens the gate, so the first one is still
    running when the next requests come however loaded the machine (a 0.6 s nap was not)."""
    gate = f"multitask-{uuid.uuid4().hex}"
    with tool_server("hold", {"gate": gate}) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            first = await client.runs.create(tid, "agent", input=USER)
            await _until_status(client, tid, first["run_id"], "running")
            with pytest.raises(ConflictError):
                await client.runs.create(tid, "agent", input=USER, multitask_strategy="reject")
            queued = await client.runs.create(
                tid, "agent", input=USER, multitask_strategy="enqueue"
            )
            assert (await client.runs.get(tid, queued["run_id"]))["status"] == "pending"
            OPEN_GATES.add(gate)
            await client.runs.join(tid, queued["run_id"])
            assert (await client.runs.get(tid, first["run_id"]))["status"] == "success"
            assert (await client.runs.get(tid, queued["run_id"]))["status"] == "success"

            OPEN_GATES.discard(gate)
            slow = await client.runs.create(tid, "agent", input=USER)
            await _until_status(client, tid, slow["run_id"], "running")
            newer = await client.runs.create(
                tid, "agent", input={"question": "again"}, multitask_strategy="interrupt"
            )
            await _until_status(client, tid, slow["run_id"], "interrupted")
            OPEN_GATES.add(gate)
            done = await client.runs.join(tid, newer["run_id"])
            assert done["question"] == "again" and done["outcome"]["success"] is True
            assert (await client.runs.get(tid, slow["run_id"]))["status"] == "interrupted"


async def _until_status(client: Any, thread_id: str, run_id: str, status: str) -> None:
    for _ in range(200):
        if (await client.runs.get(thread_id, run_id))["status"] == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {status}")


async def test_runs_survive_a_server_restart(tool_server: Any, tmp_path: Path) -> None:
    """A run cut off by a shutdown goes back to pending and finishes after the restart."""
    with tool_server("nap", {"seconds": 1.5}) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            run = await client.runs.create(tid, "agent", input=USER)
            await _until_status(client, tid, run["run_id"], "running")
            await asyncio.sleep(0.3)  # inside the tool call, past the first checkpoints
    with sqlite3.connect(tmp_path / "home" / "service.sqlite") as db:
        row = db.execute("SELECT status FROM keel_runs WHERE run_id = ?", (run["run_id"],))
        assert row.fetchone() == ("pending",)  # cut off, to be resumed
    with tool_server("nap", {"seconds": 1.5}) as url:
        async with get_client(url=url, api_key=None) as client:
            values = await asyncio.wait_for(client.runs.join(tid, run["run_id"]), 30)
            assert values["outcome"]["output"] == "done: slept 1.5"
            assert [m["type"] for m in values["messages"]].count("human") == 1
            assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"


async def test_human_approval_through_the_protocol(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """A tool that needs approval pauses the run; `command.resume` approves or edits it."""
    settings = settings_factory(
        model="scripted:sales",
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        approval_tools=["calculator"],
    )
    with running_server(settings) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            paused = await client.runs.wait(tid, "agent", input=USER)
            request = paused["__interrupt__"][0]["value"]
            assert request["kind"] == "approval" and request["tool"] == "calculator"
            assert (await client.threads.get(tid))["status"] == "interrupted"
            approved = await client.runs.wait(
                tid, "agent", command={"resume": {"action": "approve"}}
            )
            assert "Their total revenue was $" in approved["outcome"]["output"]
            assert (await client.threads.get(tid))["status"] == "idle"
            # an edit reaches the tool: the calculator runs the reviewer's expression
            tid = (await client.threads.create())["thread_id"]
            await client.runs.wait(tid, "agent", input=USER)
            edit = {"action": "edit", "arguments": {"expression": "1 + 1"}}
            edited = await client.runs.wait(tid, "agent", command={"resume": edit})
            calc = [m["content"] for m in edited["messages"] if m["type"] == "tool"][-1]
            assert "1 + 1" in calc and calc.rstrip().endswith("2")


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_service_runs_feed_run_model_and_tool_metrics(sales_server: str) -> None:
    """Runs started over HTTP go through the same observer as embedded ones."""
    async with httpx.AsyncClient(base_url=sales_server) as http:
        before = (await http.get("/metrics")).text
        async with get_client(url=sales_server, api_key=None) as client:
            thread = await client.threads.create()
            values = await client.runs.wait(thread["thread_id"], "agent", input=USER)
        assert values["outcome"]["success"] is True
        after = (await http.get("/metrics")).text
    runs = (("status", "success"), ("tier", "standard"))
    grew = _samples(after, "keel_runs_total").get(runs, 0) - _samples(
        before, "keel_runs_total"
    ).get(runs, 0)
    assert grew == 1
    tools_before = sum(_samples(before, "keel_tool_calls_total").values())
    tools_after = sum(_samples(after, "keel_tool_calls_total").values())
    assert tools_after - tools_before == 2  # sql_query, then calculator
    calls_before = sum(_samples(before, "keel_model_calls_total").values())
    calls_after = sum(_samples(after, "keel_model_calls_total").values())
    assert calls_after - calls_before == 3
