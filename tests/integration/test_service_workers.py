"""Distributed runs: the API defers to procrastinate on Postgres, `keel worker`s execute.

Workers are real `keel worker` processes; one is SIGKILLed mid-run and its runs must finish
on the other worker, continuing from their last checkpoint (no run lost, none restarted).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from keel.server.queue import RunQueue
from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}


async def test_runs_execute_on_workers_through_the_sdk(distributed: dict[str, Any]) -> None:
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 2):
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            values = await asyncio.wait_for(client.runs.wait(tid, "agent", input=USER), 60)
            assert "Their total revenue was $" in values["outcome"]["output"]
            # the worker's end event carries the values: they are the thread's checkpoint
            assert values == (await client.threads.get_state(tid))["values"]
            parts = [
                p
                async for p in client.runs.stream(
                    None, "agent", input=USER, stream_mode=["updates", "values"]
                )
            ]
            assert parts[0].event == "metadata" and parts[-1].event == "end"
            assert "values" not in (parts[-1].data or {}), "streams do not repeat the values"
            nodes = [next(iter(p.data)) for p in parts if p.event == "updates"]
            assert nodes[-2:] == ["reason", "finish"] and "act" in nodes
            run = await client.runs.create(tid, "agent", input={"question": "hello"})
            await client.runs.join(tid, run["run_id"])
            assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
            assert [t["thread_id"] for t in await client.threads.search()] == [tid]


async def test_cancel_queued_and_running_runs(distributed: dict[str, Any]) -> None:
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 1):
        async with get_client(url=url, api_key=None) as client:
            t1 = (await client.threads.create())["thread_id"]
            t2 = (await client.threads.create())["thread_id"]
            running = await client.runs.create(t1, "agent", input=USER)
            waiting = await client.runs.create(t2, "agent", input=USER)  # concurrency 1
            deadline = time.monotonic() + 60
            while (await client.runs.get(t1, running["run_id"]))["status"] != "running":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await client.runs.cancel(t2, waiting["run_id"])
            await client.runs.cancel(t1, running["run_id"])
            for tid, run in ((t1, running), (t2, waiting)):
                await asyncio.wait_for(client.runs.join(tid, run["run_id"]), 30)
                assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
            # the worker is free again and the threads take new runs
            values = await asyncio.wait_for(client.runs.wait(t2, "agent", input=USER), 60)
            assert "Their total revenue was $" in values["outcome"]["output"]


async def test_a_killed_worker_loses_no_run(distributed: dict[str, Any]) -> None:
    with running_server(distributed["settings"]) as url, workers(distributed, 2, 2) as procs:
        async with get_client(url=url, api_key=None) as client:
            runs = []
            for _ in range(6):
                tid = (await client.threads.create())["thread_id"]
                runs.append(await client.runs.create(tid, "agent", input=USER))

            async def running() -> int:
                found = [await client.runs.get(r["thread_id"], r["run_id"]) for r in runs]
                return sum(1 for f in found if f["status"] == "running")

            deadline = time.monotonic() + 60
            while await running() < 3:  # both workers busy
                assert time.monotonic() < deadline, "the workers never picked the runs up"
                await asyncio.sleep(0.05)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)

            for r in runs:
                values = await asyncio.wait_for(client.runs.join(r["thread_id"], r["run_id"]), 90)
                assert "Their total revenue was $" in values["outcome"]["output"], values
                humans = [m for m in values["messages"] if m["type"] == "human"]
                assert len(humans) == 1  # continued from its checkpoint, not restarted
            statuses = [(await client.runs.get(r["thread_id"], r["run_id"])) for r in runs]
            assert [s["status"] for s in statuses] == ["success"] * 6
        with psycopg.connect(distributed["env"]["KEEL_CHECKPOINT_URL"]) as conn:
            attempts = [
                row[0]
                for row in conn.execute(
                    "SELECT attempt FROM keel_runs WHERE run_id = ANY(%s)",
                    ([r["run_id"] for r in runs],),
                )
            ]
        assert max(attempts) >= 2  # at least one run was taken over by the other worker


async def test_a_run_the_queue_refuses_is_an_error_not_pending(
    distributed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: RunQueue, run_id: str, thread_id: str, **_: Any) -> int:
        raise psycopg.OperationalError("the queue is down")

    monkeypatch.setattr(RunQueue, "defer", refuse)
    with running_server(distributed["settings"]) as url:
        async with get_client(url=url, api_key=None) as client, httpx.AsyncClient() as http:
            tid = (await client.threads.create())["thread_id"]
            body = {"assistant_id": "agent", "input": USER}
            for path in (f"/threads/{tid}/runs", f"/threads/{tid}/runs/wait"):
                response = await http.post(url + path, json=body, timeout=10)
                assert response.status_code == 503
                assert response.headers["retry-after"] == "2"
                assert response.json()["error"] == "service_unavailable"
                assert "could not be queued" in response.json()["message"]
            runs = await client.runs.list(tid)
            assert [r["status"] for r in runs] == ["error", "error"]
            assert (await client.threads.get(tid))["status"] == "idle"


async def test_rollback_deletes_a_run_on_a_worker(distributed: dict[str, Any]) -> None:
    """`rollback` stops the worker's run, deletes it and its checkpoints, then runs anew."""
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 1):
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            await asyncio.wait_for(client.runs.wait(tid, "agent", input=USER), 60)
            kept = {h["checkpoint"]["checkpoint_id"] for h in await client.threads.get_history(tid)}
            old = (await client.runs.create(tid, "agent", input=USER))["run_id"]
            deadline = time.monotonic() + 60
            while not [
                h
                for h in await client.threads.get_history(tid, limit=50)
                if h["metadata"].get("run_id") == old
            ]:
                assert time.monotonic() < deadline, "the run never wrote a checkpoint"
                await asyncio.sleep(0.05)
            values = await asyncio.wait_for(
                client.runs.wait(tid, "agent", input=USER, multitask_strategy="rollback"), 60
            )
            assert "Their total revenue was $" in values["outcome"]["output"]
            with pytest.raises(NotFoundError):
                await client.runs.get(tid, old)
            history = await client.threads.get_history(tid, limit=200)
            assert not [h for h in history if h["metadata"].get("run_id") == old]
            assert kept <= {h["checkpoint"]["checkpoint_id"] for h in history}
            state = await client.threads.get_state(tid)
            assert state["values"] == values
            assert [m["type"] for m in values["messages"]].count("human") == 2
            assert (await client.threads.get(tid))["status"] == "idle"
