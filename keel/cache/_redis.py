"""The Redis cache backend: shared by every process; an outage means misses, never failures.

Each operation has a short socket timeout. When Redis fails, the backend logs once, serves
misses and skips Redis entirely for `retry_after_s`, so a dead Redis costs a run at most one
timeout per `retry_after_s`, not one per look-up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

__all__ = ["RedisBackend"]

T = TypeVar("T")
_log = structlog.get_logger("keel.cache")


class RedisBackend:
    """Cache entries and counters in Redis under `<namespace>:` keys."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "keel",
        timeout_s: float = 0.25,
        retry_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self._ns = namespace
        self._retry_after = retry_after_s
        self._clock = clock
        self._down_until = 0.0
        self.failures = 0
        """Operations that failed (and were served as misses)."""

    @property
    def available(self) -> bool:
        return self._clock() >= self._down_until

    async def _safe(self, op: Callable[[], Awaitable[T]]) -> T | None:
        if not self.available:
            return None
        try:
            return await op()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if self._down_until <= self._clock():
                _log.warning("cache.redis_unavailable", error=str(exc)[:200])
            self._down_until = self._clock() + self._retry_after
            return None

    def _key(self, key: str) -> str:
        return f"{self._ns}:{key}"

    async def get(self, key: str) -> bytes | None:
        value = await self._safe(lambda: self._client.get(self._key(key)))
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ms = max(int(ttl_s * 1000), 1)
        await self._safe(lambda: self._client.set(self._key(key), value, px=ms))

    async def incr_float(self, key: str, amount: float, ttl_s: float) -> float | None:
        async def op() -> float:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incrbyfloat(self._key(key), amount)
                pipe.expire(self._key(key), max(int(ttl_s), 1), nx=True)
                total, _ = await pipe.execute()
            return float(total)

        return await self._safe(op)

    async def get_float(self, key: str) -> float | None:
        value = await self._safe(lambda: self._client.get(self._key(key)))
        return float(value) if value is not None else None

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
