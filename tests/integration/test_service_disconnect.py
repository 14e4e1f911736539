"""`on_disconnect` on `runs/wait`: a client that hangs up cancels its run, or lets it go on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from keel.config import Settings
from keel.tools import default_tools
from keel.tools.registry import ToolRegistry
from tests.integration.service_server import nap, running_server, tool_once_model

USER = {"messages": [{"role": "user", "content": "take a nap"}]}


@pytest.fixture
def nap_server(settings_factory: Callable[..., Settings], tmp_path: Path) -> Callable[[float], Any]:
    """A server whose model naps `seconds` in a tool, then answers."""

    def make(seconds: float) -> Any:
        settings = settings_factory(
            model="scripted:echo", checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}"
        )
        registry = ToolRegistry.of([*default_tools(), nap])
        model = tool_once_model("nap", {"seconds": seconds})
        return running_server(settings, model=model, tools=registry)

    return make


async def _hang_up_mid_wait(url: str, thread_id: str, on_disconnect: str) -> None:
    """POST `runs/wait` and drop the connection before the run can end."""
    body = {"assistant_id": "agent", "input": USER, "on_disconnect": on_disconnect}
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(1.0)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"/threads/{thread_id}/runs/wait", json=body)


async def _status_becomes(client: Any, tid: str, run_id: str, wanted: str) -> None:
    deadline = time.monotonic() + 15
    status = ""
    while time.monotonic() < deadline:
        status = (await client.runs.get(tid, run_id))["status"]
        if status == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} is {status!r}, not {wanted!r}")


async def test_wait_cancels_the_run_when_the_client_disconnects(
    nap_server: Callable[[float], Any],
) -> None:
    with nap_server(30) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            await _hang_up_mid_wait(url, tid, "cancel")
            [run] = await client.runs.list(tid)
            await _status_becomes(client, tid, run["run_id"], "interrupted")
            assert (await client.threads.get(tid))["status"] == "idle"


async def test_wait_lets_the_run_continue_when_asked(
    nap_server: Callable[[float], Any],
) -> None:
    with nap_server(2.5) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            await _hang_up_mid_wait(url, tid, "continue")
            [run] = await client.runs.list(tid)
            assert run["status"] == "running"  # the client left; the run did not
            await _status_becomes(client, tid, run["run_id"], "success")
            values = await client.runs.join(tid, run["run_id"])
            assert "slept 2.5" in str(values["outcome"]["output"])
