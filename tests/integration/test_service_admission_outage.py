"""A run sent while Postgres restarts is admitted once it is back (issue 18, item 2): the
API waits out an outage of up to `KEEL_SERVICE__ADMISSION_OUTAGE_WAIT_S` instead of answering
503, so a restart of a few seconds costs the client nothing. On a private cluster."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import APIStatusError

from keel.config import Settings
from tests.integration.private_servers import PrivatePostgres, private_postgres
from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

pytestmark = pytest.mark.postgres

USER: dict[str, Any] = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
DOWN_S = 3.0


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


def _settings(
    settings_factory: Callable[..., Settings], cluster: PrivatePostgres, wait_s: float
) -> Settings:
    """Checkpoints and Keel's tables on the private cluster; runs in the API process."""
    return settings_factory(
        model="scripted:sales",
        checkpoint_url=cluster.url,
        checkpoint_pool={"health_check": False, "max_size": 4},
        service={"admission_outage_wait_s": wait_s},
    )


async def _final_status(url: str, tid: str, run_id: str, within_s: float = 60) -> str:
    """The run's status once it has ended (fails if it is still pending or running)."""
    async with get_client(url=url, api_key=None) as client:
        deadline = time.monotonic() + within_s
        while (status := (await client.runs.get(tid, run_id))["status"]) in ("pending", "running"):
            assert time.monotonic() < deadline, "the run never ended"
            await asyncio.sleep(0.3)
    return str(status)


async def _create_during_restart(url: str, cluster: PrivatePostgres) -> tuple[Any, str, float]:
    """Postgres goes down, `runs.create` is sent, Postgres comes back `DOWN_S` later: the
    answer (or the error), the thread id and how long the call took."""
    async with get_client(url=url, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        await asyncio.to_thread(cluster.stop)
        back = threading.Timer(DOWN_S, cluster.start)
        back.start()
        started = time.monotonic()
        try:
            answer: Any = await client.runs.create(tid, "agent", input=USER)
        except APIStatusError as exc:
            answer = exc
        finally:
            took = time.monotonic() - started
            await asyncio.to_thread(back.join)
        return answer, tid, took


async def test_a_run_sent_during_a_restart_is_admitted_and_succeeds(
    cluster: PrivatePostgres, settings_factory: Callable[..., Settings]
) -> None:
    with running_server(_settings(settings_factory, cluster, 10.0)) as url:
        run, tid, took = await _create_during_restart(url, cluster)
        assert not isinstance(run, Exception), f"refused: {run}"
        assert took >= DOWN_S * 0.5, "the request came before the outage, not during it"
        async with get_client(url=url, api_key=None) as client:
            await client.runs.join(tid, run["run_id"])
            done = await client.runs.get(tid, run["run_id"])
            assert done["status"] == "success", done
            state: Any = await client.threads.get_state(tid)
            assert "revenue" in str(state["values"]["outcome"])
            assert [r["run_id"] for r in await client.runs.list(tid)] == [run["run_id"]]


async def test_an_outage_longer_than_the_wait_is_a_503_with_retry_after(
    cluster: PrivatePostgres, settings_factory: Callable[..., Settings]
) -> None:
    """The wait is bounded: past it the client is told to come back, and nothing started."""
    with running_server(_settings(settings_factory, cluster, 0.5)) as url:
        refused, tid, took = await _create_during_restart(url, cluster)
        assert isinstance(refused, APIStatusError), refused
        assert refused.response.status_code == 503
        assert refused.response.headers["retry-after"]
        assert took < DOWN_S, "it waited past its bound"
        async with get_client(url=url, api_key=None) as client:
            assert await client.runs.list(tid) == []


async def test_on_workers_a_run_sent_during_a_restart_is_queued_and_succeeds(
    cluster: PrivatePostgres, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """With `keel worker`s the run is also deferred to the queue (procrastinate, on the same
    cluster) once the database is back, and a worker runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_MODEL="scripted:sales",
        KEEL_CHECKPOINT_URL=cluster.url,
        KEEL_SERVICE__QUEUE="procrastinate",
        KEEL_RETRY__INITIAL_S="0",
    )
    settings = settings_factory(
        model="scripted:sales",
        checkpoint_url=cluster.url,
        service={"queue": "procrastinate", "admission_outage_wait_s": 10.0},
    )
    setup = {"env": env, "settings": settings, "logs": tmp_path}
    with running_server(settings) as url, workers(setup, 1, 2):
        run, tid, took = await _create_during_restart(url, cluster)
        assert not isinstance(run, Exception), f"refused: {run}"
        assert took >= DOWN_S * 0.5, "the request came before the outage, not during it"
        status = await _final_status(url, tid, run["run_id"])
        assert status == "success", (tmp_path / "worker0.log").read_text()[-2000:]


async def test_a_worker_started_during_an_outage_waits_for_the_database(
    cluster: PrivatePostgres, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """`keel worker` started while Postgres is down does not exit: it waits, starts when the
    database is back, and runs what is queued (before: it died in its start-up migration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_MODEL="scripted:sales",
        KEEL_CHECKPOINT_URL=cluster.url,
        KEEL_SERVICE__QUEUE="procrastinate",
    )
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=cluster.url, service={"queue": "procrastinate"}
    )
    setup = {"env": env, "settings": settings, "logs": tmp_path}
    with running_server(settings) as url:
        await asyncio.to_thread(cluster.stop)
        with workers(setup, 1, 2) as procs:
            await asyncio.sleep(DOWN_S * 2)  # the worker reaches its first connection
            assert procs[0].poll() is None, (tmp_path / "worker0.log").read_text()[-2000:]
            await asyncio.to_thread(cluster.start)
            async with get_client(url=url, api_key=None) as client:
                tid = (await client.threads.create())["thread_id"]
                run = await client.runs.create(tid, "agent", input=USER)
            status = await _final_status(url, tid, run["run_id"])
            assert status == "success", (tmp_path / "worker0.log").read_text()[-2000:]
