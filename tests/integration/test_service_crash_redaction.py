"""A run that crashes (an exception outside the nodes' handling) tells its API client why,
with the configured secrets masked: the raw exception text once reached clients, the run
record and webhooks unredacted (issue 18, item 13's review note; item 9's rule)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from keel.config import Settings
from tests.integration.service_server import running_server

PLANTED = "sk-live-PLANTED0123456789abcdefXYZ"


class BrokenSaver(InMemorySaver):
    """A checkpointer whose writes fail with a message quoting the provider key."""

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        raise RuntimeError(f"storage refused the write (auth {PLANTED})")


async def test_a_crashed_run_reports_its_error_with_secrets_masked(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(openai_api_key=PLANTED)
    with running_server(settings, checkpointer=BrokenSaver()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            tid = (await http.post("/threads", json={})).json()["thread_id"]
            body = {"assistant_id": "agent", "input": {"question": "hello"}}
            waited = await http.post(f"/threads/{tid}/runs/wait", json=body)
            runs = (await http.get(f"/threads/{tid}/runs")).json()
    assert runs and runs[0]["status"] == "error", runs
    assert "storage refused the write" in waited.text, waited.text
    assert PLANTED not in waited.text
    assert PLANTED not in str(runs)
