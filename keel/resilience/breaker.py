"""Circuit breakers per model and per tool: closed → open → half-open on a failure-rate window.

- closed: calls go through; outcomes of the last `window_s` seconds are kept. Once at least
  `min_calls` are in the window and the failed share reaches `failure_rate`, it opens.
- open: calls are refused (`CircuitOpenError`) without being made, for `open_s` seconds.
- half-open: `half_open_calls` probes go through; one failure re-opens, all passing closes.

Two stores with the same semantics: `MemoryBreakerStore` (one process) and
`RedisBreakerStore` (every worker sharing one Redis sees one breaker; each transition is one
atomic Lua script). No maintained library implements a failure-*rate* window with a shared
Redis state (pybreaker and purgatory count consecutive failures), hence this module.
Callers pass `now` (epoch seconds) so tests and replays control time.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from keel.config import BreakerSettings
from keel.errors import CircuitOpenError

__all__ = [
    "BreakerState",
    "BreakerStore",
    "Breakers",
    "MemoryBreakerStore",
    "RedisBreakerStore",
]

BreakerState = Literal["closed", "open", "half_open"]


class BreakerStore(Protocol):
    """Where breaker state lives; both methods are atomic per breaker name."""

    async def allow(self, name: str, now: float, policy: BreakerSettings) -> tuple[str, bool]:
        """The breaker's state and whether a call may go through now."""
        ...

    async def record(self, name: str, ok: bool, now: float, policy: BreakerSettings) -> str:
        """Record one call's outcome; returns the state after it."""
        ...

    async def state(self, name: str) -> str:
        """The stored state (no transition)."""
        ...

    async def refusing(self, name: str, now: float, policy: BreakerSettings) -> bool:
        """Whether a call now would be refused (open, not yet due for a probe); no transition."""
        ...


@dataclass
class _Breaker:
    state: str = "closed"
    since: float = 0.0
    probes: int = 0
    probe_ok: int = 0
    window: deque[tuple[float, bool]] = field(default_factory=deque)
    failed: int = 0
    """Failures in `window`, kept as it changes: counting them on every call cost time in
    proportion to the calls of the last `window_s` (thousands, with many runs at once)."""

    def clear(self) -> None:
        self.window.clear()
        self.failed = 0


class MemoryBreakerStore:
    """Breakers in this process's memory (the default without Redis)."""

    def __init__(self) -> None:
        self._breakers: dict[str, _Breaker] = {}

    def _get(self, name: str) -> _Breaker:
        return self._breakers.setdefault(name, _Breaker())

    async def allow(self, name: str, now: float, policy: BreakerSettings) -> tuple[str, bool]:
        b = self._get(name)
        if b.state == "closed":
            return "closed", True
        if b.state == "open":
            if now < b.since + policy.open_s:
                return "open", False
            b.state, b.since, b.probes, b.probe_ok = "half_open", now, 1, 0
            return "half_open", True
        if now >= b.since + policy.open_s:  # probes that never reported: let new ones through
            b.since, b.probes, b.probe_ok = now, 0, 0
        if b.probes < policy.half_open_calls:
            b.probes += 1
            return "half_open", True
        return "half_open", False

    async def record(self, name: str, ok: bool, now: float, policy: BreakerSettings) -> str:
        b = self._get(name)
        if b.state == "half_open":
            if not ok:
                b.state, b.since = "open", now
                b.clear()
            else:
                b.probe_ok += 1
                if b.probe_ok >= policy.half_open_calls:
                    b.state = "closed"
                    b.clear()
            return b.state
        b.window.append((now, ok))
        b.failed += not ok
        while b.window and b.window[0][0] <= now - policy.window_s:
            b.failed -= not b.window.popleft()[1]
        if b.state == "closed":
            total = len(b.window)
            if total >= policy.min_calls and b.failed / total >= policy.failure_rate:
                b.state, b.since = "open", now
        return b.state

    async def state(self, name: str) -> str:
        return self._get(name).state

    async def refusing(self, name: str, now: float, policy: BreakerSettings) -> bool:
        b = self._get(name)
        return b.state == "open" and now < b.since + policy.open_s


_ALLOW = """
local h = KEYS[1]
local now = tonumber(ARGV[1])
local open_s = tonumber(ARGV[2])
local half = tonumber(ARGV[3])
local st = redis.call('HGET', h, 'state') or 'closed'
if st == 'closed' then return {st, 1} end
local since = tonumber(redis.call('HGET', h, 'since') or '0')
if st == 'open' then
  if now < since + open_s then return {st, 0} end
  redis.call('HSET', h, 'state', 'half_open', 'since', ARGV[1], 'probes', 1, 'probe_ok', 0)
  return {'half_open', 1}
end
if now >= since + open_s then
  redis.call('HSET', h, 'since', ARGV[1], 'probes', 0, 'probe_ok', 0)
end
local probes = tonumber(redis.call('HGET', h, 'probes') or '0')
if probes < half then
  redis.call('HINCRBY', h, 'probes', 1)
  return {st, 1}
end
return {st, 0}
"""

_RECORD = """
local h, calls, fails = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local ok = ARGV[2] == '1'
local window = tonumber(ARGV[4])
local min_calls = tonumber(ARGV[5])
local rate = tonumber(ARGV[6])
local half = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local st = redis.call('HGET', h, 'state') or 'closed'
redis.call('PEXPIRE', h, ttl)
if st == 'half_open' then
  if not ok then
    redis.call('HSET', h, 'state', 'open', 'since', ARGV[1])
    redis.call('DEL', calls, fails)
    return 'open'
  end
  if redis.call('HINCRBY', h, 'probe_ok', 1) >= half then
    redis.call('HSET', h, 'state', 'closed')
    redis.call('DEL', calls, fails)
    return 'closed'
  end
  return st
end
redis.call('ZREMRANGEBYSCORE', calls, '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', fails, '-inf', now - window)
redis.call('ZADD', calls, ARGV[1], ARGV[3])
if not ok then redis.call('ZADD', fails, ARGV[1], ARGV[3]) end
redis.call('PEXPIRE', calls, ttl)
redis.call('PEXPIRE', fails, ttl)
if st == 'open' then return st end
local total = redis.call('ZCARD', calls)
local failed = redis.call('ZCARD', fails)
if total >= min_calls and failed / total >= rate then
  redis.call('HSET', h, 'state', 'open', 'since', ARGV[1])
  return 'open'
end
redis.call('HSET', h, 'state', 'closed')
return 'closed'
"""


class RedisBreakerStore:
    """Breakers shared by every process using the same Redis and key prefix."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._redis = client
        self._prefix = f"{prefix}:breaker"
        self._allow = client.register_script(_ALLOW)
        self._record = client.register_script(_RECORD)

    def _key(self, name: str) -> str:
        return f"{self._prefix}:{{{name}}}"

    async def allow(self, name: str, now: float, policy: BreakerSettings) -> tuple[str, bool]:
        st, ok = await self._allow(
            keys=[self._key(name)], args=[repr(now), policy.open_s, policy.half_open_calls]
        )
        return _text(st), bool(int(ok))

    async def record(self, name: str, ok: bool, now: float, policy: BreakerSettings) -> str:
        key = self._key(name)
        ttl_ms = int((policy.window_s + policy.open_s) * 2000) + 1000
        st = await self._record(
            keys=[key, f"{key}:calls", f"{key}:fails"],
            args=[
                repr(now),
                "1" if ok else "0",
                uuid.uuid4().hex,
                policy.window_s,
                policy.min_calls,
                policy.failure_rate,
                policy.half_open_calls,
                ttl_ms,
            ],
        )
        return _text(st)

    async def state(self, name: str) -> str:
        st = await self._redis.hget(self._key(name), "state")
        return _text(st) if st else "closed"

    async def refusing(self, name: str, now: float, policy: BreakerSettings) -> bool:
        st, since = await self._redis.hmget(self._key(name), ["state", "since"])
        return bool(st) and _text(st) == "open" and now < float(_text(since)) + policy.open_s


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Breakers:
    """The breakers of one agent: `check` before a call, `record` after it.

    `closed_ttl_s` > 0 (a shared store): a breaker this process found closed, in `check` or
    in the state `record` returned, is taken as closed for that long without a round trip.
    """

    def __init__(
        self, policy: BreakerSettings, store: BreakerStore, *, closed_ttl_s: float = 0.0
    ) -> None:
        self.policy = policy
        self.store = store
        self.closed_ttl_s = closed_ttl_s
        self._closed_until: dict[str, float] = {}

    def _saw(self, name: str, state: str, now: float) -> None:
        if state == "closed" and self.closed_ttl_s > 0:
            self._closed_until[name] = now + self.closed_ttl_s
        else:
            self._closed_until.pop(name, None)

    async def check(self, name: str, now: float) -> str:
        """Raise `CircuitOpenError` when `name`'s breaker refuses the call; else its state."""
        if not self.policy.enabled:
            return "closed"
        if self._closed_until.get(name, 0.0) > now:
            return "closed"
        state, allowed = await self.store.allow(name, now, self.policy)
        self._saw(name, state, now)
        if not allowed:
            raise CircuitOpenError(f"the circuit breaker for {name} is {state.replace('_', '-')}")
        return state

    async def record(self, name: str, ok: bool, now: float) -> str:
        if not self.policy.enabled:
            return "closed"
        state = await self.store.record(name, ok, now, self.policy)
        self._saw(name, state, now)
        return state

    async def state(self, name: str) -> str:
        return await self.store.state(name)

    async def refusing(self, name: str, now: float) -> bool:
        """Whether `check` would refuse now (without using up a half-open probe)."""
        return self.policy.enabled and await self.store.refusing(name, now, self.policy)
