"""Redis goes away while `keel worker`s execute runs: every client still gets the run's real
outcome (Redis carries stream events; the run record and checkpoints carry the truth).

A private `redis-server` (never the shared one) is killed mid-run. Before: the worker's run
failed publishing its events, `runs/wait` answered 500 (`redis ConnectionError`) and
streams were reset, although the runs could succeed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from keel.config import Settings
from tests.integration.private_servers import PrivateRedis, private_redis
from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

USER: dict[str, Any] = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
ANSWER = "Their total revenue was $"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path) as server:
        yield server


def _setup(
    settings_factory: Callable[..., Settings], tmp_path: Path, db: str, redis_url: str
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_MODEL="scripted:sales@500ms",  # long enough that Redis dies mid-run
        KEEL_CHECKPOINT_URL=db,
        KEEL_REDIS_URL=redis_url,
        KEEL_REDIS_PREFIX="keeltest:outage",
        KEEL_SERVICE__QUEUE="procrastinate",
        KEEL_SERVICE__WORKER_HEARTBEAT_S="0.5",
        KEEL_RETRY__INITIAL_S="0",
    )
    settings = settings_factory(
        model="scripted:sales",
        checkpoint_url=db,
        redis_url=redis_url,
        redis_prefix="keeltest:outage",
        service={"queue": "procrastinate"},
    )
    return {"env": env, "settings": settings, "logs": tmp_path}


async def test_clients_get_the_real_outcome_when_redis_dies_mid_run(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    queue_db: str,
    redis_server: PrivateRedis,
) -> None:
    setup = _setup(settings_factory, tmp_path, queue_db, redis_server.url)
    with running_server(setup["settings"]) as url, workers(setup, 1, 2):
        async with get_client(url=url, api_key=None) as client:
            t1 = (await client.threads.create())["thread_id"]
            t2 = (await client.threads.create())["thread_id"]
            waiting = asyncio.create_task(client.runs.wait(t1, "agent", input=USER))
            parts: list[Any] = []

            async def stream() -> None:
                async for part in client.runs.stream(
                    t2, "agent", input=USER, stream_mode=["updates", "values"]
                ):
                    parts.append(part)

            streaming = asyncio.create_task(stream())
            deadline = time.monotonic() + 60
            while not any(p.event == "updates" for p in parts):  # the run is under way
                assert time.monotonic() < deadline, "the streamed run never started"
                await asyncio.sleep(0.05)
            redis_server.stop()

            values: Any = await asyncio.wait_for(waiting, 90)
            assert ANSWER in values["outcome"]["output"], values
            await asyncio.wait_for(streaming, 90)
            assert parts[-1].event == "end" and parts[-1].data["status"] == "success", parts[-3:]
            final = [p for p in parts if p.event == "values"]
            assert final and ANSWER in final[-1].data["outcome"]["output"]
            for tid in (t1, t2):
                runs = await client.runs.list(tid)
                assert [r["status"] for r in runs] == ["success"]

            # with Redis still down, new runs run and answer
            later: Any = await asyncio.wait_for(client.runs.wait(t1, "agent", input=USER), 90)
            assert ANSWER in later["outcome"]["output"]
