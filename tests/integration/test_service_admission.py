"""Admission control: tenant run rates, the bounded queue and the global in-flight cap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import RateLimitError

from keel.config import Settings
from keel.server.admin import create_key
from keel.tools import default_tools
from keel.tools.registry import ToolRegistry
from tests.integration.service_server import nap, running_server, tool_once_model

QUESTION = {"question": "How long?"}


async def _status(client: Any, run: dict[str, Any]) -> str:
    return str((await client.runs.get(run["thread_id"], run["run_id"]))["status"])


async def test_queue_is_bounded_and_in_flight_is_capped(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        service={"max_in_flight": 1, "max_queued": 1},
    )
    model = tool_once_model("nap", {"seconds": 0.8})
    tools = ToolRegistry.of([*default_tools(), nap])
    with running_server(settings, model=model, tools=tools) as url:
        async with get_client(url=url, api_key=None) as client:
            threads = [(await client.threads.create())["thread_id"] for _ in range(3)]
            first = await client.runs.create(threads[0], "agent", input=QUESTION)
            for _ in range(100):
                if await _status(client, first) == "running":
                    break
                await asyncio.sleep(0.02)
            second = await client.runs.create(threads[1], "agent", input=QUESTION)
            with pytest.raises(RateLimitError) as refused:
                await client.runs.create(threads[2], "agent", input=QUESTION)
            assert int(refused.value.response.headers["Retry-After"]) >= 1
            assert "queue is full" in refused.value.response.json()["message"]
            await asyncio.sleep(0.3)
            assert await _status(client, first) == "running"
            assert await _status(client, second) == "pending"  # waits for the only slot
            await client.runs.join(threads[1], second["run_id"])
            assert await _status(client, first) == "success"
            assert await _status(client, second) == "success"
            # nothing was lost: the refused thread has no run and takes one now
            assert await client.runs.list(threads[2]) == []
            values = await client.runs.wait(threads[2], "agent", input=QUESTION)
            assert values["outcome"]["output"] == "done: slept 0.8"


async def _three_runs(url: str, key: str) -> list[str]:
    outcomes = []
    async with get_client(url=url, api_key=key) as client:
        for _ in range(3):
            try:
                await client.runs.create(None, "agent", input=QUESTION)
                outcomes.append("ok")
            except RateLimitError as exc:
                retry_after = int(exc.response.headers["Retry-After"])
                assert 1 <= retry_after <= 60
                outcomes.append("429")
    return outcomes


async def test_tenant_run_rate_in_memory(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        rate_limits={"tenant_runs_per_minute": 2},
    )
    acme = (await create_key(settings, "acme", "member"))["api_key"]
    globex = (await create_key(settings, "globex", "member"))["api_key"]
    with running_server(settings) as url:
        assert await _three_runs(url, acme) == ["ok", "ok", "429"]
        assert await _three_runs(url, globex) == ["ok", "ok", "429"]


@pytest.mark.redis
async def test_tenant_run_rate_is_shared_by_api_processes_through_redis(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    common = {
        "rate_limits": {"tenant_runs_per_minute": 2},
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "service": {"db_url": f"sqlite:///{tmp_path / 'service.sqlite'}"},
    }
    one = settings_factory(checkpoint_url=f"sqlite:///{tmp_path / 'a.sqlite'}", **common)
    two = settings_factory(checkpoint_url=f"sqlite:///{tmp_path / 'b.sqlite'}", **common)
    key = (await create_key(one, "acme", "member"))["api_key"]
    with running_server(one) as url_one, running_server(two) as url_two:
        async with get_client(url=url_one, api_key=key) as a:
            await a.runs.create(None, "agent", input=QUESTION)
        async with get_client(url=url_two, api_key=key) as b:
            await b.runs.create(None, "agent", input=QUESTION)
            with pytest.raises(RateLimitError):
                await b.runs.create(None, "agent", input=QUESTION)
