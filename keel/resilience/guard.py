"""`Resilience`: the breakers and limits one agent applies around every model and tool call.

Every model call of a run reaches it through the model gate (`keel.nodes._model_gate`),
which adds the budget check, the timeout, the cache and the accounting around it:
```python
async with ctx.resilience.model_call("openai:gpt-4o-mini", tokens=900, clock=..., sleep=...,
                                     deadline=...):
    reply = await model.ainvoke(prompt)
```
Before the call: the model's breaker (`CircuitOpenError` when open: nothing is sent), then
its rates and a concurrency slot (waiting, or `RateLimitedError` past the deadline). After
it: the outcome goes to the breaker — failures the classifier calls retryable or degradable
count; fatal ones (our own bugs, cancellation) do not, nor does a tool's own error answer
(`tool_error`: the tool worked, the request could not be met).

In-process by default; with a Redis URL, breakers, rates and slots are shared by every
worker. If Redis is unreachable the guard fails open (logs, and lets the call through):
losing the shared breaker must not stop every run.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import structlog

from keel.config import BreakerSettings, RateLimitSettings, Settings
from keel.errors import CircuitOpenError, ErrorCode, ToolInputError, is_control_flow
from keel.observability import events
from keel.resilience.breaker import Breakers, MemoryBreakerStore, RedisBreakerStore
from keel.resilience.classify import retry_on
from keel.resilience.ratelimit import RateLimits, RedisConcurrencyCap

__all__ = ["Resilience"]

log = structlog.get_logger("keel.resilience")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _storage_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


class Resilience:
    """Breakers, rate limits and concurrency caps for one agent (shared via Redis if set)."""

    def __init__(
        self,
        breaker: BreakerSettings | None = None,
        rate_limits: RateLimitSettings | None = None,
        *,
        redis_url: str | None = None,
        prefix: str = "keel",
        clock: Clock = time.time,
    ) -> None:
        self.redis_url = redis_url
        self._client: Any = None
        self._seen: dict[str, str] = {}
        """Breaker states this process last saw (transitions feed metrics and logs)."""
        breaker = breaker or BreakerSettings()
        rate_limits = rate_limits or RateLimitSettings()
        if redis_url:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(redis_url)
            self.breakers = Breakers(
                breaker,
                RedisBreakerStore(self._client, prefix),
                closed_ttl_s=breaker.shared_closed_ttl_s,
            )
            self.limits = RateLimits(
                rate_limits,
                redis_url=redis_url,
                prefix=prefix,
                cap=RedisConcurrencyCap(self._client, prefix, clock),
            )
        else:
            self.breakers = Breakers(breaker, MemoryBreakerStore())
            self.limits = RateLimits(rate_limits)

    @classmethod
    def from_settings(cls, settings: Settings) -> Resilience:
        return cls(
            settings.breaker,
            settings.rate_limits,
            redis_url=settings.redis_url,
            prefix=settings.redis_prefix,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _check(self, name: str, now: float) -> None:
        try:
            await self.breakers.check(name, now)
        except CircuitOpenError:
            raise
        except _storage_errors() as exc:
            log.warning("breaker_store_unavailable", breaker=name, error=str(exc))

    async def _record(self, name: str, ok: bool, now: float) -> None:
        try:
            state = await self.breakers.record(name, ok, now)
        except _storage_errors() as exc:
            log.warning("breaker_store_unavailable", breaker=name, error=str(exc))
            return
        if state == "open" and not ok:
            log.warning("breaker_open", breaker=name)
        before = self._seen.get(name, "closed")
        if state != before:
            self._seen[name] = state
            events.breaker_changed(name, before, state)

    async def admit_run(self, tenant: str) -> None:
        """Count a new run against its tenant's rate (`RateLimitedError` when used up)."""
        try:
            await self.limits.acquire_run(tenant)
        except _storage_errors() as exc:
            log.warning("rate_limit_store_unavailable", tenant=tenant, error=str(exc))

    def model_call(
        self,
        model: str,
        *,
        tokens: int,
        clock: Clock,
        sleep: Sleep,
        deadline: float,
        lease_s: float = 120.0,
    ) -> AbstractAsyncContextManager[None]:
        """Guard one model call (see the module docstring)."""
        name = f"model:{model}"
        if not self.limits.limits_models:  # no rate or slot to hold: none of their machinery
            return _Guarded(self, name, clock, tool=False)
        return self._limited_model_call(
            name, model, tokens=tokens, clock=clock, sleep=sleep, deadline=deadline, lease_s=lease_s
        )

    @asynccontextmanager
    async def _limited_model_call(
        self,
        name: str,
        model: str,
        *,
        tokens: int,
        clock: Clock,
        sleep: Sleep,
        deadline: float,
        lease_s: float,
    ) -> AsyncIterator[None]:
        await self._check(name, clock())
        async with AsyncExitStack() as held:
            slept = 0.0

            async def counted_sleep(seconds: float) -> None:
                nonlocal slept
                slept += seconds
                await sleep(seconds)

            try:
                await held.enter_async_context(
                    self.limits.model_slot(
                        model,
                        tokens=tokens,
                        clock=clock,
                        sleep=counted_sleep,
                        deadline=deadline,
                        lease_s=lease_s,
                    )
                )
            except _storage_errors() as exc:
                log.warning("rate_limit_store_unavailable", model=model, error=str(exc))
            if slept:
                events.rate_limit_waited(name, slept)
            async with _Guarded(self, name, clock, tool=False, check=False):
                yield

    def tool_call(
        self, tool: str, *, clock: Clock, transient: tuple[type[BaseException], ...] = ()
    ) -> AbstractAsyncContextManager[None]:
        """Guard one tool call with the tool's breaker."""
        return _Guarded(self, f"tool:{tool}", clock, tool=True, transient=transient)

    async def _outcome_of(
        self,
        name: str,
        exc: BaseException | None,
        clock: Clock,
        *,
        tool: bool,
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Tell the breaker how a guarded call ended (`exc`: what it raised, if anything)."""
        if exc is None:
            await self._record(name, True, clock())
            return
        if is_control_flow(exc):
            return
        if isinstance(exc, ToolInputError):  # the callee worked; the request was wrong
            await self._record(name, True, clock())
            return
        verdict = retry_on(exc, transient=transient, tool=tool)
        if verdict.code == ErrorCode.TOOL_ERROR:  # the tool answered, with an error
            await self._record(name, True, clock())
            return
        if verdict.code != ErrorCode.CANCELLED and (tool or verdict.kind != "fatal"):
            await self._record(name, False, clock())

    async def model_refused(self, model: str, now: float) -> bool:
        """Whether `model`'s breaker would refuse a call now (the degradation chain skips it)."""
        try:
            return await self.breakers.refusing(f"model:{model}", now)
        except _storage_errors() as exc:
            log.warning("breaker_store_unavailable", breaker=model, error=str(exc))
            return False

    async def breaker_state(self, name: str) -> str:
        """`closed` / `open` / `half_open` of a breaker (`model:<spec>` or `tool:<name>`)."""
        return await self.breakers.state(name)


class _Guarded:
    """One guarded call as a plain context manager: the breaker's check on entry, the
    outcome on exit. Not a generator-based one: with a thousand runs waiting on their
    calls, each of those holds a generator, its context manager and their arguments alive
    for the call's length (issue 19)."""

    __slots__ = ("check", "clock", "guard", "name", "tool", "transient")

    def __init__(
        self,
        guard: Resilience,
        name: str,
        clock: Clock,
        *,
        tool: bool,
        transient: tuple[type[BaseException], ...] = (),
        check: bool = True,
    ) -> None:
        self.guard, self.name, self.clock = guard, name, clock
        self.tool, self.transient, self.check = tool, transient, check

    async def __aenter__(self) -> None:
        if self.check:
            await self.guard._check(self.name, self.clock())

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        await self.guard._outcome_of(
            self.name, exc, self.clock, tool=self.tool, transient=self.transient
        )
