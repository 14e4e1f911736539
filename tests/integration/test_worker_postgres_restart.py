"""A Postgres restart under load costs `keel worker`s retries, never runs.

A private cluster (never the shared server) holds the service store, the queue and the
checkpoints; an API and a real `keel worker` process use it; runs are submitted, and the
server is restarted with `-m immediate` (every connection cut) while they execute. Every
accepted run must end `success`, and a run submitted after the restart must execute: each
connection Keel holds (the thread fence, procrastinate's pool and listener, the checkpoint
pool, the store's pool) has to come back by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from keel.config import Settings
from tests.integration.private_servers import PrivatePostgres, private_postgres
from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

pytestmark = pytest.mark.postgres

USER: dict[str, Any] = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
RUNS = 6
OUTAGE_S = 4.0


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


def _setup(settings_factory: Callable[..., Settings], tmp_path: Path, url: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_MODEL="scripted:sales@400ms",  # runs last a few seconds: the restart lands mid-run
        KEEL_CHECKPOINT_URL=url,
        KEEL_SERVICE__QUEUE="procrastinate",
        KEEL_SERVICE__WORKER_HEARTBEAT_S="0.5",
        KEEL_SERVICE__WORKER_STALLED_AFTER_S="5",
        KEEL_RETRY__INITIAL_S="0",
    )
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=url, service={"queue": "procrastinate"}
    )
    return {"env": env, "settings": settings, "logs": tmp_path}


async def _status(client: Any, thread_id: str, run_id: str) -> str | None:
    """The run's status, or None while the API cannot answer (the database is restarting)."""
    try:
        return str((await client.runs.get(thread_id, run_id))["status"])
    except (httpx.HTTPError, Exception):
        return None


async def _until_final(client: Any, runs: list[Any], within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        found = [await _status(client, r["thread_id"], r["run_id"]) for r in runs]
        if all(s not in (None, "pending", "running") for s in found):
            return [str(s) for s in found]
        if time.monotonic() > deadline:
            return [str(s) for s in found]
        await asyncio.sleep(0.3)


async def test_runs_survive_a_postgres_restart_under_load(
    cluster: PrivatePostgres, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    setup = _setup(settings_factory, tmp_path, cluster.url)
    with running_server(setup["settings"]) as url, workers(setup, 1, 3) as procs:
        async with get_client(url=url, api_key=None) as client:
            runs = []
            for _ in range(RUNS):
                tid = (await client.threads.create())["thread_id"]
                runs.append(await client.runs.create(tid, "agent", input=USER))
            deadline = time.monotonic() + 60
            while "running" not in [
                await _status(client, r["thread_id"], r["run_id"]) for r in runs
            ]:
                assert time.monotonic() < deadline, "no run started"
                await asyncio.sleep(0.05)

            await asyncio.to_thread(cluster.restart)

            statuses = await _until_final(client, runs, within_s=120)
            assert statuses == ["success"] * RUNS, _worker_log(tmp_path)
            assert procs[0].poll() is None, "the worker stopped: " + _worker_log(tmp_path)

            # the same worker takes new runs, on new and old threads
            tid = (await client.threads.create())["thread_id"]
            later = [
                await client.runs.create(tid, "agent", input=USER),
                await client.runs.create(runs[0]["thread_id"], "agent", input=USER),
            ]
            assert await _until_final(client, later, within_s=60) == ["success"] * 2, _worker_log(
                tmp_path
            )

            # a longer outage (seconds, not a quick restart): the worker outlives it too
            await asyncio.to_thread(cluster.stop)
            await asyncio.sleep(OUTAGE_S)
            assert procs[0].poll() is None, "the worker gave up: " + _worker_log(tmp_path)
            await asyncio.to_thread(cluster.start)
            after = [await client.runs.create(tid, "agent", input=USER)]
            final = await _until_final(client, after, within_s=60)
            assert final == ["success"], _worker_log(tmp_path)


def _worker_log(tmp_path: Path) -> str:
    return (tmp_path / "worker0.log").read_text(errors="replace")[-3000:]


async def test_the_thread_fence_reconnects_and_keeps_its_locks(cluster: PrivatePostgres) -> None:
    import psycopg

    from keel.server.queue import ThreadFence

    async def advisory_locks() -> int:
        async with await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) as conn:
            cur = await conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    fence = ThreadFence(cluster.url)
    await fence.open()
    try:
        async with fence.hold("t-held"):
            await asyncio.to_thread(cluster.restart)  # every session is gone, locks with them
            async with fence.hold("t-new"):  # failed "the connection is closed" before
                assert await advisory_locks() == 2, "the held lock was taken again"
            assert fence.reconnects == 1
        assert await advisory_locks() == 0, "both were released"
    finally:
        await fence.close()


async def test_the_queue_listener_outlives_an_outage(cluster: PrivatePostgres) -> None:
    """procrastinate's LISTEN connection: an outage longer than a reconnect attempt used to
    end the listener, and a worker stops when one of its side tasks ends."""
    from keel.server.queue import make_queue_app

    app = make_queue_app(cluster.url)
    received: list[str] = []

    async def on_notification(*, channel: str, payload: str) -> None:
        received.append(payload)

    async with app.open_async():
        listener = asyncio.create_task(
            app.connector.listen_notify(on_notification=on_notification, channels=["keel_test"])
        )
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.stop)
            await asyncio.sleep(2.0)
            assert not listener.done(), f"the listener ended: {listener.exception()!r}"
            await asyncio.to_thread(cluster.start)
            deadline = time.monotonic() + 30
            while not received:
                assert not listener.done(), f"the listener ended: {listener.exception()!r}"
                assert time.monotonic() < deadline, "no notification after the outage"
                await app.connector.execute_query_async("SELECT pg_notify('keel_test', 'back')")
                await asyncio.sleep(0.3)
            assert received[-1] == "back"
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
