"""A run's kept stream window: reconnects inside it replay exactly, behind it get 410."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from keel.server.errors import Gone, Unprocessable
from keel.server.handles import RunHandle
from keel.server.resume import resume_after
from keel.server.runs import RunManager
from keel.server.store import RunRecord


def _handle(keep: int, events: int) -> RunHandle:
    at = datetime.now(UTC)
    record = RunRecord("r1", "t1", "default", "a", "running", "enqueue", {}, {}, at, at)
    handle = RunHandle(record=record, modes=["values"], keep=keep)
    for i in range(1, events + 1):
        handle.emit("values", {"i": i})
    return handle


async def _read(handle: RunHandle, after: int) -> list[tuple[str | None, str, Any]]:
    handle.done.set()
    return [item async for item in handle.subscribe(after)]


async def test_the_window_keeps_the_last_events_and_replays_after_an_id() -> None:
    handle = _handle(keep=100, events=150)
    assert handle.first_kept == 51 and handle.emitted == 150
    items = await _read(handle, 60)
    assert [i[0] for i in items] == [str(n) for n in range(61, 151)]
    assert [i[2]["i"] for i in items] == list(range(61, 151))
    assert await _read(handle, 50) == [(str(n), "values", {"i": n}) for n in range(51, 151)]


async def test_a_reader_behind_the_window_is_told_not_given_a_gap() -> None:
    items = await _read(_handle(keep=100, events=150), 10)
    assert items == [(None, "error", {"error": "StreamGap", "message": items[0][2]["message"]})]
    assert "11-50" in items[0][2]["message"]


async def test_last_event_id_is_checked_against_the_window() -> None:
    handle = _handle(keep=100, events=150)
    runs = cast(RunManager, None)  # a run of this process: the manager is not consulted
    assert await resume_after(runs, handle, None) is None
    assert await resume_after(runs, handle, "") is None
    assert await resume_after(runs, handle, "50") == "50"
    assert await resume_after(runs, handle, "150") == "150"
    with pytest.raises(Gone, match="events 11-50"):
        await resume_after(runs, handle, "10")
    for bad in ("151", "abc", "1-0", " 5", "99999999999999999999"):
        with pytest.raises(Unprocessable, match="not an event id"):
            await resume_after(runs, handle, bad)
