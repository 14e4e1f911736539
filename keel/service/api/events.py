"""Run stream events across processes: workers append them to a Redis stream per run,
API processes read them back for `runs/stream` and `join_stream`.

Without Redis a queued run's stream carries only `metadata`, the final `values` and `end`
(the API polls the run record); with Redis it carries every event the worker saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from keel.service.api.encode import dumps

__all__ = ["RedisEvents"]

_MAXLEN = 10_000
_KEEP_S = 3600


class RedisEvents:
    """One Redis stream per run: `{prefix}:run:{run_id}:events`, kept an hour after `end`."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:events"

    async def publish(self, run_id: str, event: str, data: Any) -> None:
        key = self._key(run_id)
        await self.redis.xadd(key, {"e": event, "d": dumps(data)}, maxlen=_MAXLEN, approximate=True)
        if event == "end":
            await self.redis.expire(key, _KEEP_S)

    async def read(
        self,
        run_id: str,
        *,
        block_ms: int = 3000,
        ended: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """Every event of the run from the first, until `end`.

        `ended` is asked whenever nothing arrived for `block_ms`: a run that ended without
        an `end` event here stops the read too. Workers and cancellations publish `end` for
        every run they end, so this is the fallback (a lost process), not a status poll:
        asking every second cost a database read per second per waiting client. It stays
        under redis-py's 5 s socket timeout, which a blocked read counts against.
        """
        key, last = self._key(run_id), "0"
        while True:
            found = await self.redis.xread({key: last}, block=block_ms, count=200)
            if not found and ended is not None and await ended():
                return
            for _stream, entries in found or []:
                for entry_id, fields in entries:
                    last = entry_id
                    event = fields[b"e"].decode()
                    yield event, orjson.loads(fields[b"d"])
                    if event == "end":
                        return
