"""Agent Server protocol conformance, through the official `langgraph-sdk` client.

What an outside end-to-end suite found (issue 20): thread search order, state at and from a
checkpoint, joining a stream without modes, re-joining a wait, subgraphs, cancelling a
finished run, prune, the protocol's `messages` events and crons going with their thread.
Each runs on SQLite and Postgres (in-process); where the path differs, with a worker too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from keel.config import Settings
from keel.server.admin import create_key
from tests.integration.service_server import running_server, sales_server_on, workers
from tests.sales_truth import SALES_QUESTION

USER: dict[str, Any] = {"messages": [{"role": "user", "content": SALES_QUESTION}]}


@pytest.fixture(params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[str]:
    """`keel serve` with in-process runs, its checkpoints and tables on SQLite or Postgres."""
    with sales_server_on(request.param, settings_factory, tmp_path, "keel_conformance") as url:
        yield url


# threads --------------------------------------------------------------------------------


async def test_thread_search_sorts_as_asked(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        ids = []
        for name in ("b", "c", "a"):
            ids.append((await client.threads.create(thread_id=f"sort-{name}"))["thread_id"])
            await asyncio.sleep(0.01)
        oldest_first = await client.threads.search(sort_by="created_at", sort_order="asc")
        assert [t["thread_id"] for t in oldest_first] == ids
        newest_first = await client.threads.search(sort_by="created_at", sort_order="desc")
        assert [t["thread_id"] for t in newest_first] == ids[::-1]
        by_id = await client.threads.search(sort_by="thread_id", sort_order="asc", limit=2)
        assert [t["thread_id"] for t in by_id] == ["sort-a", "sort-b"]
        by_id_desc = await client.threads.search(sort_by="thread_id", offset=1)
        assert [t["thread_id"] for t in by_id_desc] == ["sort-b", "sort-a"]
        with pytest.raises(UnprocessableEntityError):
            await client.threads.search(sort_by="colour")  # type: ignore[arg-type]


async def test_state_at_a_checkpoint(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        await client.runs.wait(tid, "agent", input=USER)
        history = await client.threads.get_history(tid, limit=3)
        older = history[-1]["checkpoint"]
        at = await client.threads.get_state(tid, checkpoint=older)  # POST …/state/checkpoint
        assert at["checkpoint"]["checkpoint_id"] == older["checkpoint_id"]
        assert at["values"] == history[-1]["values"]
        by_id = await client.threads.get_state(tid, checkpoint_id=older["checkpoint_id"])
        assert by_id["values"] == at["values"]
        with pytest.raises(UnprocessableEntityError):
            await client.threads.get_state(tid, checkpoint={**older, "checkpoint_ns": "sub:1"})


async def test_state_updated_from_a_checkpoint(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        await client.runs.wait(tid, "agent", input=USER)
        older = (await client.threads.get_history(tid, limit=3))[-1]["checkpoint"]
        # an update from that checkpoint forks the thread there (SQLite needed checkpoint_ns)
        done = await client.threads.update_state(
            tid, {"question": "forked"}, checkpoint_id=older["checkpoint_id"]
        )
        forked: dict[str, Any] = dict(await client.threads.get_state(tid))
        assert forked["checkpoint"]["checkpoint_id"] == done["checkpoint"]["checkpoint_id"]
        assert forked["values"]["question"] == "forked"
        assert forked["parent_checkpoint"]["checkpoint_id"] == older["checkpoint_id"]
        again = await client.threads.update_state(tid, {"question": "again"}, checkpoint=older)
        assert again["checkpoint"]["checkpoint_id"] != done["checkpoint"]["checkpoint_id"]
        latest: dict[str, Any] = dict(await client.threads.get_state(tid))
        assert latest["values"]["question"] == "again"


async def test_prune_deletes_or_keeps_the_latest_checkpoint(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        gone = (await client.threads.create())["thread_id"]
        kept = (await client.threads.create())["thread_id"]
        for tid in (gone, kept):
            await client.runs.wait(tid, "agent", input=USER)
        before = await client.threads.get_state(kept)
        assert len(await client.threads.get_history(kept, limit=100)) > 1
        assert await client.threads.prune([gone, "not-a-thread"]) == {"pruned_count": 1}
        with pytest.raises(NotFoundError):
            await client.threads.get(gone)
        pruned = await client.threads.prune([kept], strategy="keep_latest")
        assert pruned == {"pruned_count": 1}
        history = await client.threads.get_history(kept, limit=100)
        assert len(history) == 1 and history[0]["values"] == before["values"]
        assert (await client.threads.get_state(kept))["checkpoint"] == before["checkpoint"]


async def test_deleting_a_thread_deletes_its_crons(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        other = (await client.threads.create())["thread_id"]
        await client.crons.create_for_thread(tid, "agent", schedule="0 0 1 1 *", input=USER)
        await client.crons.create_for_thread(other, "agent", schedule="0 0 1 1 *", input=USER)
        await client.crons.create("agent", schedule="0 0 1 1 *", input=USER)
        assert await client.crons.count() == 3
        await client.threads.delete(tid)
        left = await client.crons.search()
        assert len(left) == 2 and tid not in {c["thread_id"] for c in left}


# runs -----------------------------------------------------------------------------------


async def test_join_stream_without_modes_gets_all_of_the_runs_modes(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        run = await client.runs.create(
            tid, "agent", input=USER, stream_mode=["updates", "values"], stream_resumable=True
        )
        parts = [p async for p in client.runs.join_stream(tid, run["run_id"])]
        events = {p.event for p in parts}
        assert {"updates", "values", "end"} <= events, events
        only = [p async for p in client.runs.join_stream(tid, run["run_id"], stream_mode="updates")]
        assert {p.event for p in only} <= {"metadata", "updates", "end"}
        assert any(p.event == "updates" for p in only)


async def test_wait_names_where_to_rejoin(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=60) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        body = {"assistant_id": "agent", "input": USER}
        for path in (f"/threads/{tid}/runs/wait", "/runs/wait"):
            answer = await http.post(path, json={**body, "on_completion": "keep"})
            assert answer.status_code == 200
            location = answer.headers["location"]
            assert location.endswith("/join") and location == (
                answer.headers["content-location"] + "/join"
            )
            rejoined = await http.get(location)  # what the SDK does if the body is cut off
            assert rejoined.status_code == 200 and rejoined.json() == answer.json()


async def test_cancelling_a_finished_run_is_a_404(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        run = await client.runs.create(tid, "agent", input=USER)
        await client.runs.join(tid, run["run_id"])
        with pytest.raises(NotFoundError):
            await client.runs.cancel(tid, run["run_id"])


async def test_subgraphs_of_a_graph_without_any(server: str) -> None:
    async with get_client(url=server, api_key=None) as client:
        assert await client.assistants.get_subgraphs("agent") == {}
        assert await client.assistants.get_subgraphs("agent", namespace="x", recurse=True) == {}
        with pytest.raises(NotFoundError):
            await client.assistants.get_subgraphs("nobody")


def _check_protocol_messages(parts: list[Any]) -> None:
    events = [p.event for p in parts]
    assert "messages" not in events, "the tuple shape is for messages-tuple only"
    complete = [p.data for p in parts if p.event == "messages/complete"]
    metadata = [p.data for p in parts if p.event == "messages/metadata"]
    assert complete and metadata
    ids = [m[0]["id"] for m in complete]
    announced = [next(iter(m)) for m in metadata]
    assert ids == announced, "each message is announced once, before it"
    assert all(isinstance(m, list) and len(m) == 1 for m in complete)
    assert any(
        m[0]["type"] == "ai" and "Their total revenue was $" in str(m[0]["content"])
        for m in complete
    )
    assert all("langgraph_node" in next(iter(m.values()))["metadata"] for m in metadata)


async def _messages_both_ways(url: str) -> None:
    async with get_client(url=url, api_key=None) as client:
        parts = [
            p async for p in client.runs.stream(None, "agent", input=USER, stream_mode="messages")
        ]
        _check_protocol_messages(parts)
        tuples = [
            p
            async for p in client.runs.stream(
                None, "agent", input=USER, stream_mode="messages-tuple"
            )
        ]
        pairs = [p.data for p in tuples if p.event == "messages"]
        assert pairs and all(len(p) == 2 and "type" in p[0] for p in pairs)
        assert not any(p.event.startswith("messages/") for p in tuples)


async def test_messages_mode_sends_the_protocols_events(server: str) -> None:
    await _messages_both_ways(server)


def _holds_channels(value: Any) -> bool:
    if isinstance(value, dict):
        return "run" in value or "control" in value or any(map(_holds_channels, value.values()))
    return isinstance(value, list) and any(map(_holds_channels, value))


async def test_checkpoints_tasks_and_debug_modes_show_the_state_as_the_other_routes_do(
    server: str,
) -> None:
    """The values, a node's input and its writes inside these modes' events carry the
    state's keys (`iteration`, `limits`, …), as `values` and `/state` do: never the two
    channels Keel keeps them in."""
    async with get_client(url=server, api_key=None) as client:
        parts = [
            p
            async for p in client.runs.stream(
                None, "agent", input=USER, stream_mode=["checkpoints", "tasks", "debug"]
            )
        ]
    by_event: dict[str, list[Any]] = {}
    for part in parts:
        by_event.setdefault(part.event, []).append(part.data)
    assert {"checkpoints", "tasks", "debug"} <= set(by_event), list(by_event)
    assert not any(_holds_channels(by_event[m]) for m in ("checkpoints", "tasks", "debug"))
    last = by_event["checkpoints"][-1]["values"]
    assert last["outcome"]["success"] and last["iteration"] >= 1 and "limits" in last
    reasons = [t for t in by_event["tasks"] if t.get("name") == "reason"]
    assert any("deadline" in (t.get("input") or {}) for t in reasons)
    assert any("iteration_deadline" in (t.get("result") or {}) for t in reasons)
    assert {d["type"] for d in by_event["debug"]} == {"checkpoint", "task", "task_result"}


# with a worker: the events come back through Redis, the run's modes from its record -------


@pytest.mark.postgres
@pytest.mark.redis
async def test_on_workers_join_stream_and_messages(distributed: dict[str, Any]) -> None:
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 2):
        await _messages_both_ways(url)
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            run = await client.runs.create(
                tid, "agent", input=USER, stream_mode=["updates"], stream_resumable=True
            )
            parts = [p async for p in client.runs.join_stream(tid, run["run_id"])]
            assert any(p.event == "updates" for p in parts), [p.event for p in parts]
            assert parts[-1].event == "end"
            with pytest.raises(NotFoundError):
                await client.runs.cancel(tid, run["run_id"])
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                answer = await http.post(
                    f"/threads/{tid}/runs/wait", json={"assistant_id": "agent", "input": USER}
                )
                assert (await http.get(answer.headers["location"])).json() == answer.json()


# tenants: thread ids are per tenant ---------------------------------------------------


async def test_another_tenants_thread_id_tells_nothing_and_loses_nothing(
    secured: Settings,
) -> None:
    """Creating a thread with an id another tenant holds answers exactly as creating a fresh
    one (the caller's own thread); prune skips the other's; the owner's thread is untouched.
    (More in test_service_thread_namespaces.)"""
    acme = (await create_key(secured, "acme", "member"))["api_key"]
    globex = (await create_key(secured, "globex", "member"))["api_key"]
    with running_server(secured) as url:
        async with (
            httpx.AsyncClient(base_url=url, headers={"x-api-key": acme}) as a,
            httpx.AsyncClient(base_url=url, headers={"x-api-key": globex}) as g,
        ):
            body = {"thread_id": "taken", "metadata": {"owner": "acme"}}
            assert (await a.post("/threads", json=body)).status_code == 200
            own = await a.post("/threads", json={"thread_id": "taken"})
            assert own.status_code == 409
            fresh = await g.post("/threads", json={"thread_id": "free", "metadata": {"x": 1}})
            other = await g.post("/threads", json={"thread_id": "taken", "metadata": {"x": 1}})
            assert other.status_code == fresh.status_code == 200
            assert other.json()["metadata"] == fresh.json()["metadata"]
            lenient = {"thread_id": "taken", "if_exists": "do_nothing"}
            assert (await g.post("/threads", json=lenient)).json() == other.json()
            assert (await g.post("/threads/prune", json={"thread_ids": ["taken"]})).json() == {
                "pruned_count": 1
            }
            assert [t["thread_id"] for t in (await g.post("/threads/search", json={})).json()] == [
                "free"
            ]
            kept = await a.get("/threads/taken")
            assert kept.status_code == 200 and kept.json()["metadata"]["owner"] == "acme"
