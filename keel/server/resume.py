"""Reconnecting to a run's stream: check a client's `Last-Event-ID` against what is kept.

Every SSE event of a run carries an `id:`. In-process the ids count the run's events (`1`,
`2`, …) and the run's handle keeps the last `KEEL_SERVICE__STREAM_BUFFER_EVENTS`; on workers
they are the entry ids of the run's Redis stream (`0-0` is the `metadata` event the API adds
first). A reconnect replays the events after the id it names, then follows the run live.

An id that is not this run's (malformed, or newer than any event sent) is a 422; one whose
following events are no longer kept (dropped from the window, trimmed from Redis, expired,
or the run ended and left this process) is a 410: replaying from there would leave a gap.
"""

from __future__ import annotations

import re

from keel.server.errors import Gone, Unprocessable
from keel.server.handles import RunHandle
from keel.server.runs import FIRST_REMOTE_ID, RunManager
from keel.server.store import ACTIVE_RUN_STATUSES

__all__ = ["resume_after"]

_COUNT_ID = re.compile(r"\d{1,18}")
_REDIS_ID = re.compile(r"(\d{1,19})-(\d{1,19})")


def _redis_id(value: str) -> tuple[int, int] | None:
    match = _REDIS_ID.fullmatch(value)
    return (int(match[1]), int(match[2])) if match else None


def _not_ours(last_event_id: str, sent: str) -> Unprocessable:
    return Unprocessable(
        f"Last-Event-ID {last_event_id!r} is not an event id of this run's stream "
        f"({sent}); send the `id` of the last event you received, or no Last-Event-ID"
    )


async def resume_after(
    runs: RunManager, handle: RunHandle, last_event_id: str | None
) -> str | None:
    """Where a reconnect's replay starts (None: from the first event), once checked."""
    if not last_event_id:
        return None
    if not handle.remote:
        if not _COUNT_ID.fullmatch(last_event_id):
            raise _not_ours(last_event_id, "its ids are 1, 2, …")
        seen = int(last_event_id)
        if seen > handle.emitted:
            raise _not_ours(last_event_id, f"it has sent ids 1-{handle.emitted}")
        if seen + 1 < handle.first_kept:
            raise Gone(
                f"events {seen + 1}-{handle.first_kept - 1} of run {handle.run_id} are no "
                f"longer kept (the last {handle.keep} are); read its state instead"
            )
        return str(seen)
    if runs.queue is None:  # embedded: the run ended and its handle left this process
        raise Gone(
            f"run {handle.run_id} has ended and its events are no longer kept; "
            "read its result with GET /threads/{thread_id}/runs/{run_id}/join"
        )
    seen_id = _redis_id(last_event_id)
    if seen_id is None:
        raise _not_ours(last_event_id, "its ids look like 1764140000000-0")
    if last_event_id == FIRST_REMOTE_ID or seen_id == (0, 0):
        return FIRST_REMOTE_ID
    if runs.events is None:  # no Redis: the stream is metadata 0-0, values 0-1, end 0-2
        if seen_id[0] != 0 or seen_id[1] > 2:
            raise _not_ours(last_event_id, "its ids are 0-0, 0-1, 0-2")
        return last_event_id
    bounds = await runs.events.bounds(handle.run_id)
    if bounds is None:
        record = await runs.store.get_run_any(handle.run_id)
        if record is None or record.status not in ACTIVE_RUN_STATUSES:
            raise Gone(
                f"the events of run {handle.run_id} have expired; read its result with "
                "GET /threads/{thread_id}/runs/{run_id}/join"
            )
        raise _not_ours(last_event_id, "it has sent only 0-0 so far")
    last, trimmed = _redis_id(bounds.last), _redis_id(bounds.trimmed)
    if last is not None and seen_id > last:
        raise _not_ours(last_event_id, f"its newest id is {bounds.last}")
    if trimmed is not None and seen_id < trimmed:
        raise Gone(
            f"events of run {handle.run_id} after {last_event_id} were trimmed from its stream"
        )
    return f"{seen_id[0]}-{seen_id[1]}"
