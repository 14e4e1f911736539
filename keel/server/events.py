"""Run stream events across processes: workers append them to a Redis stream per run,
API processes read them back for `runs/stream` and `join_stream`.

Without Redis a queued run's stream carries only `metadata`, the final `values` and `end`
(the API polls the run record); with Redis it carries every event the worker saw.

Redis is optional for correctness: the run record and the checkpoints (Postgres) say how a
run ended. So when Redis goes away, publishing is skipped (the run goes on), and a read
raises `EventsUnavailable`, on which the API falls back to the run record, as without Redis.

An event's id on the wire is its Redis entry id (`1764140000000-0`), so a client that
reconnects with `Last-Event-ID` reads on right after it (`XREAD` is exclusive).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError

from keel.server.encode import dumps

__all__ = ["EventsUnavailable", "RedisEvents", "StreamBounds"]

log = structlog.get_logger("keel.server.events")

PUBLISH_TIMEOUT_S = 2.0
"""A publish that takes longer is dropped: a hung Redis never holds up a run."""
RETRY_AFTER_S = 1.0
"""After a failed publish, the next ones are skipped for this long (no timeout per event)."""
READ_GRACE_S = 5.0
"""A blocked read that has not returned this long after its block time: Redis hangs."""
_OUTAGE = (RedisError, OSError, asyncio.TimeoutError)


class EventsUnavailable(Exception):
    """Redis cannot be read: follow the run through its record instead."""


_MAXLEN = 10_000
_KEEP_S = 3600
_LIVE_KEEP_S = 86_400
"""A stream whose run never published `end` (its process was lost for good) expires too."""


@dataclass(frozen=True)
class StreamBounds:
    """The ids a run's stream can still replay after: above `trimmed`, up to `last`."""

    last: str
    """The newest entry's id."""
    trimmed: str
    """The newest id trimmed away by `MAXLEN` (`0-0`: nothing was)."""


_MAX_ID = f"{2**64 - 1}-{2**64 - 1}"
UNKNOWN_BOUNDS = StreamBounds(last=_MAX_ID, trimmed="0-0")
"""The bounds of a stream Redis cannot be asked about: every id is taken as valid."""


class RedisEvents:
    """One Redis stream per run: `{prefix}:run:{run_id}:events`, kept an hour after `end`."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._down_until = 0.0
        self.dropped = 0
        """Events not published because Redis was unreachable."""

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:events"

    async def publish(self, run_id: str, event: str, data: Any) -> None:
        """Append one event; with Redis unreachable the event is dropped (logged), never
        raised: streams are a view of the run, and the run must go on."""
        if time.monotonic() < self._down_until:
            self.dropped += 1
            return
        try:
            await asyncio.wait_for(self._publish(run_id, event, data), PUBLISH_TIMEOUT_S)
        except _OUTAGE as exc:
            self.dropped += 1
            self._down_until = time.monotonic() + RETRY_AFTER_S
            log.warning("events.publish_failed", run_id=run_id, kind=event, error=repr(exc)[:200])

    async def _publish(self, run_id: str, event: str, data: Any) -> None:
        key = self._key(run_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"e": event, "d": dumps(data)}, maxlen=_MAXLEN, approximate=True)
            pipe.expire(key, _KEEP_S if event == "end" else _LIVE_KEEP_S)
            await pipe.execute()

    async def bounds(self, run_id: str) -> StreamBounds | None:
        """What the run's stream still holds; None when it has none (not begun, or expired).

        With Redis unreachable nothing can be checked: `UNKNOWN_BOUNDS` accepts any id, and
        the read that follows falls back to the run's outcome (`EventsUnavailable`)."""
        key = self._key(run_id)
        try:
            if not await self.redis.exists(key):
                return None
            info = await self.redis.xinfo_stream(key)
        except _OUTAGE as exc:
            log.warning("events.bounds_unavailable", run_id=run_id, error=repr(exc)[:200])
            return UNKNOWN_BOUNDS
        return StreamBounds(
            last=_text(info.get("last-generated-id", b"0-0")),
            trimmed=_text(info.get("max-deleted-entry-id", b"0-0")),
        )

    async def read(
        self,
        run_id: str,
        *,
        after: str = "0-0",
        block_ms: int = 3000,
        ended: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[tuple[str, str, Any]]:
        """`(id, event, data)` of every event of the run after id `after`, until `end`.

        `ended` is asked whenever nothing arrived for `block_ms`: a run that ended without
        an `end` event here stops the read too. Workers and cancellations publish `end` for
        every run they end, so this is the fallback (a lost process), not a status poll:
        asking every second cost a database read per second per waiting client. It stays
        under redis-py's 5 s socket timeout, which a blocked read counts against.

        Raises `EventsUnavailable` when Redis goes away (the events read so far stand).
        """
        key, last = self._key(run_id), after
        while True:
            try:
                found = await asyncio.wait_for(
                    self.redis.xread({key: last}, block=block_ms, count=200),
                    block_ms / 1000 + READ_GRACE_S,
                )
            except _OUTAGE as exc:
                raise EventsUnavailable(repr(exc)[:200]) from exc
            if not found and ended is not None and await ended():
                return
            for _stream, entries in found or []:
                for entry_id, fields in entries:
                    last = _text(entry_id)
                    event = fields[b"e"].decode()
                    yield last, event, orjson.loads(fields[b"d"])
                    if event == "end":
                        return


def _text(value: Any) -> str:
    """A Redis reply (bytes) or id as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
