"""A request that cancels a run waits a bounded time for it to stop, then answers 503."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from keel.server.errors import Unavailable
from keel.server.executors import inprocess
from keel.server.handles import ASSISTANT_ID, RunHandle
from keel.server.store import RunRecord, now


def _handle() -> RunHandle:
    at = now()
    record = RunRecord("r1", "t1", "default", ASSISTANT_ID, "running", "reject", {}, {}, at, at)
    return RunHandle(record=record, modes=[])


async def test_a_run_that_will_not_stop_is_a_503_not_a_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inprocess, "CANCEL_WAIT_S", 0.2)
    handle = _handle()

    async def stubborn() -> None:  # a step that keeps going after being cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        await asyncio.sleep(10)

    handle.task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    try:
        with pytest.raises(Unavailable) as raised:
            await inprocess.cancel_handle(handle, reason="thread deleted", wait=True)
        assert raised.value.status == 503
        assert raised.value.headers == {"Retry-After": "2"}
        assert "did not stop within 0.2 s" in raised.value.message
        assert handle.cancel_reason == "thread deleted"
    finally:
        handle.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handle.task


async def test_a_run_that_stops_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inprocess, "CANCEL_WAIT_S", 5.0)
    handle = _handle()

    async def obedient() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            handle.done.set()

    handle.task = asyncio.create_task(obedient())
    await asyncio.sleep(0)
    await inprocess.cancel_handle(handle, wait=True)
    assert handle.done.is_set() and handle.task.cancelled()
