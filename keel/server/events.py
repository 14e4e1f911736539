"""Run stream events across processes: workers append them to a Redis stream per run,
API processes read them back for `runs/stream` and `join_stream`.

Without Redis a queued run's stream carries only `metadata`, the final `values` and `end`
(the API polls the run record); with Redis it carries every event the worker saw.

An event's id on the wire is its Redis entry id (`1764140000000-0`), so a client that
reconnects with `Last-Event-ID` reads on right after it (`XREAD` is exclusive).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from keel.server.encode import dumps

__all__ = ["RedisEvents", "StreamBounds"]

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


class RedisEvents:
    """One Redis stream per run: `{prefix}:run:{run_id}:events`, kept an hour after `end`."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:events"

    async def publish(self, run_id: str, event: str, data: Any) -> None:
        key = self._key(run_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"e": event, "d": dumps(data)}, maxlen=_MAXLEN, approximate=True)
            pipe.expire(key, _KEEP_S if event == "end" else _LIVE_KEEP_S)
            await pipe.execute()

    async def bounds(self, run_id: str) -> StreamBounds | None:
        """What the run's stream still holds; None when it has none (not begun, or expired)."""
        key = self._key(run_id)
        if not await self.redis.exists(key):
            return None
        info = await self.redis.xinfo_stream(key)
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
        """
        key, last = self._key(run_id), after
        while True:
            found = await self.redis.xread({key: last}, block=block_ms, count=200)
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
