"""A cancel right after `runs.create` on workers: each run ends in exactly one final status
(an accepted cancel wins; a refused one found the run ended), never back to `pending`, and
a worker that took the run just before the cancel does not overwrite it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from tests.integration.service_server import running_server, workers

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

FINAL = ("success", "error", "interrupted")
TRIES = 60


async def test_cancel_right_after_create_ends_every_run_once(
    distributed: dict[str, Any],
) -> None:
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 4):
        async with get_client(url=url, api_key=None) as client:
            runs: list[tuple[str, str]] = []
            accepted: list[bool] = []
            for i in range(TRIES):
                tid = (await client.threads.create())["thread_id"]
                run = await client.runs.create(tid, "agent", input={"question": "hello"})
                await asyncio.sleep((i % 30) * 0.0017)  # 0-50 ms after the create
                try:
                    await client.runs.cancel(tid, run["run_id"])
                    accepted.append(True)
                except NotFoundError:  # it had ended: the cancel lost
                    accepted.append(False)
                runs.append((tid, run["run_id"]))

            async def statuses() -> list[str]:
                return [(await client.runs.get(t, r))["status"] for t, r in runs]

            deadline = time.monotonic() + 90
            seen = await statuses()
            while not all(s in FINAL for s in seen):
                assert time.monotonic() < deadline, f"runs left unfinished: {seen}"
                await asyncio.sleep(0.2)
                seen = await statuses()
            await asyncio.sleep(3)  # a late worker must not change an ended run
            assert await statuses() == seen
            # an accepted cancel wins; a refused one found the run ended
            assert seen == ["interrupted" if a else "success" for a in accepted], seen
            threads = [(await client.threads.get(t))["status"] for t, _ in runs]
            assert "busy" not in threads, threads
