"""Self-imposed rate limits and per-model concurrency caps.

Rates (model requests/min, model tokens/min, tenant runs/min) use the `limits` library's
moving-window limiter, on its in-memory storage or on Redis, so every worker sharing a
Redis shares one window. A model call that would exceed a rate waits for the window (up to
`max_wait_s` and the step's deadline), then raises `RateLimitedError`; a run that would
exceed its tenant's rate is refused at once.

The concurrency cap is a semaphore: `asyncio.Semaphore` in one process, or a Redis sorted
set of leases (expiring, so a crashed worker's slot comes back) shared by all workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from keel.config import RateLimitSettings
from keel.errors import RateLimitedError

if TYPE_CHECKING:  # `limits` is imported when a rate is configured (start-up, issue 19)
    from limits import RateLimitItem
    from limits.aio.storage import Storage
    from limits.aio.strategies import MovingWindowRateLimiter

__all__ = ["ConcurrencyCap", "MemoryConcurrencyCap", "RateLimits", "RedisConcurrencyCap"]

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
POLL_S = 0.05


class ConcurrencyCap(ABC):
    """At most `cap` holders per name at once."""

    @abstractmethod
    async def try_acquire(self, name: str, cap: int, token: str, lease_s: float) -> bool:
        """Take a slot for `token` if fewer than `cap` are held (a lease of `lease_s`)."""

    @abstractmethod
    async def release(self, name: str, token: str) -> None:
        """Give `token`'s slot back."""

    @abstractmethod
    async def holders(self, name: str) -> int:
        """Slots held now."""


class MemoryConcurrencyCap(ConcurrencyCap):
    """Slots counted in this process."""

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    async def try_acquire(self, name: str, cap: int, token: str, lease_s: float) -> bool:
        held = self._held.setdefault(name, set())
        if len(held) >= cap:
            return False
        held.add(token)
        return True

    async def release(self, name: str, token: str) -> None:
        self._held.get(name, set()).discard(token)

    async def holders(self, name: str) -> int:
        return len(self._held.get(name, set()))


_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


class RedisConcurrencyCap(ConcurrencyCap):
    """Slots as leases in a Redis sorted set (score: when the lease lapses)."""

    def __init__(self, client: Any, prefix: str, clock: Clock) -> None:
        self._redis = client
        self._prefix = f"{prefix}:concurrency"
        self._clock = clock
        self._acquire = client.register_script(_ACQUIRE)

    def _key(self, name: str) -> str:
        return f"{self._prefix}:{{{name}}}"

    async def try_acquire(self, name: str, cap: int, token: str, lease_s: float) -> bool:
        now = self._clock()
        got = await self._acquire(
            keys=[self._key(name)],
            args=[repr(now), cap, repr(now + lease_s), token, int(lease_s * 2000) + 1000],
        )
        return bool(int(got))

    async def release(self, name: str, token: str) -> None:
        await self._redis.zrem(self._key(name), token)

    async def holders(self, name: str) -> int:
        await self._redis.zremrangebyscore(self._key(name), "-inf", repr(self._clock()))
        return int(await self._redis.zcard(self._key(name)))


class RateLimits:
    """Every configured limit of one agent, on one storage."""

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        storage: Storage | None = None,
        cap: ConcurrencyCap | None = None,
        redis_url: str | None = None,
        prefix: str = "keel",
    ) -> None:
        self.settings = settings
        self._storage = storage
        self._redis_url = redis_url
        self._prefix = prefix
        self._moving: MovingWindowRateLimiter | None = None
        self.cap = cap or MemoryConcurrencyCap()
        s = settings
        self._requests = _per_minute(s.model_requests_per_minute)
        self._tokens = _per_minute(s.model_tokens_per_minute)
        self._runs = _per_minute(s.tenant_runs_per_minute)

    @property
    def limits_models(self) -> bool:
        """Whether any model call has a rate or a concurrency slot to hold."""
        return (
            self._requests is not None
            or self._tokens is not None
            or self.settings.model_concurrency is not None
        )

    @property
    def storage(self) -> Storage:
        """The rates' storage (Redis when `redis_url` is set), made on first use."""
        if self._storage is None:
            from limits.aio.storage import MemoryStorage, RedisStorage

            self._storage = (
                RedisStorage(
                    f"async+{self._redis_url}",
                    implementation="redispy",
                    key_prefix=f"{self._prefix}:limits",
                )
                if self._redis_url
                else MemoryStorage()
            )
        return self._storage

    @property
    def _limiter(self) -> MovingWindowRateLimiter:
        if self._moving is None:
            from limits.aio.strategies import MovingWindowRateLimiter

            self._moving = MovingWindowRateLimiter(self.storage)
        return self._moving

    async def acquire_run(self, tenant: str) -> None:
        """Count one run for `tenant`; `RateLimitedError` when its rate is used up."""
        if self._runs is None:
            return
        if not await self._limiter.hit(self._runs, "runs", tenant):
            stats = await self._limiter.get_window_stats(self._runs, "runs", tenant)
            raise RateLimitedError(
                f"tenant '{tenant}' reached {self._runs.amount} runs per minute; "
                f"try again after epoch {stats.reset_time:.0f}"
            )

    async def _wait_hit(
        self, item: RateLimitItem, ident: str, cost: int, clock: Clock, sleep: Sleep, until: float
    ) -> None:
        cost = max(1, min(cost, item.amount))
        while not await self._limiter.hit(item, "model", ident, cost=cost):
            stats = await self._limiter.get_window_stats(item, "model", ident)
            now = clock()
            wait = max(POLL_S, stats.reset_time - now)
            if now + wait > until:
                raise RateLimitedError(
                    f"{ident}: {item.amount} per minute used up; the window frees in "
                    f"{stats.reset_time - now:.1f}s, past the step's deadline"
                )
            await sleep(min(wait, 1.0))

    @asynccontextmanager
    async def model_slot(
        self,
        model: str,
        *,
        tokens: int,
        clock: Clock,
        sleep: Sleep,
        deadline: float,
        lease_s: float,
    ) -> AsyncIterator[None]:
        """Hold one request (and `tokens`) of `model`'s rates and one of its concurrent slots."""
        until = min(deadline, clock() + self.settings.max_wait_s)
        limit = self.settings.model_concurrency
        token = uuid.uuid4().hex
        if limit is not None:  # the slot first: a refused call must not use up the rate
            while not await self.cap.try_acquire(model, limit, token, lease_s):
                if clock() + POLL_S > until:
                    raise RateLimitedError(
                        f"{model}: {limit} concurrent calls already in flight until the deadline"
                    )
                await sleep(POLL_S)
        try:
            if self._requests is not None:
                await self._wait_hit(self._requests, model, 1, clock, sleep, until)
            if self._tokens is not None:
                await self._wait_hit(self._tokens, f"{model}:tokens", tokens, clock, sleep, until)
            yield
        finally:
            if limit is not None:  # a lost release comes back when its lease lapses
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.cap.release(model, token))


def _per_minute(amount: int | None) -> RateLimitItem | None:
    if not amount:
        return None
    from limits import RateLimitItemPerMinute

    return RateLimitItemPerMinute(amount)
