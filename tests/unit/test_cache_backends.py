"""Cache backends (memory, SQLite, the real Redis) and the Redis-outage degradation."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration

from keel.cache import (
    MODEL_RESPONSE_CACHE,
    Caches,
    MemoryBackend,
    RedisBackend,
    SqliteBackend,
    cache_scope,
    normalize_question,
)
from keel.cache.backends import CacheBackend
from keel.config import CacheSettings
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A unique key prefix on the real Redis server, removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        client.close()
        require_service("Redis", exc)
    namespace = f"keeltest-{uuid.uuid4().hex[:10]}"
    yield namespace
    for key in client.scan_iter(match=f"{namespace}:*"):
        client.delete(key)
    client.close()


def dead_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[CacheBackend, FakeClock]]:
    clock = FakeClock()
    made: CacheBackend
    if request.param == "memory":
        made = MemoryBackend(clock=clock)
    elif request.param == "sqlite":
        made = SqliteBackend(tmp_path / "cache.sqlite", clock=clock)
    else:
        namespace = request.getfixturevalue("redis_namespace")
        made = RedisBackend(REDIS_URL, namespace=namespace)
    yield made, clock
    await made.aclose()


async def test_set_get_and_miss(backend: tuple[CacheBackend, FakeClock]) -> None:
    store, _ = backend
    assert await store.get("k") is None
    await store.set("k", b"value", 60)
    assert await store.get("k") == b"value"
    await store.set("k", b"newer", 60)
    assert await store.get("k") == b"newer"


async def test_entries_expire(backend: tuple[CacheBackend, FakeClock]) -> None:
    store, clock = backend
    if isinstance(store, RedisBackend):
        await store.set("short", b"v", 0.05)  # Redis keeps its own time
        assert await store.get("short") == b"v"
        await asyncio.sleep(0.1)
    else:
        await store.set("short", b"v", 10)
        clock.now += 9
        assert await store.get("short") == b"v"
        clock.now += 2
    assert await store.get("short") is None


async def test_counters_add_up(backend: tuple[CacheBackend, FakeClock]) -> None:
    store, _ = backend
    assert await store.get_float("c") is None
    assert await store.incr_float("c", 0.25, 3600) == pytest.approx(0.25)
    assert await store.incr_float("c", 0.5, 3600) == pytest.approx(0.75)
    assert await store.get_float("c") == pytest.approx(0.75)


async def test_memory_backend_evicts_least_recently_used() -> None:
    store = MemoryBackend(max_entries=2)
    await store.set("a", b"1", 60)
    await store.set("b", b"2", 60)
    assert await store.get("a") == b"1"  # a is now the most recent
    await store.set("c", b"3", 60)
    assert await store.get("b") is None
    assert await store.get("a") == b"1" and await store.get("c") == b"3"


async def test_sqlite_backend_is_shared_between_instances(tmp_path: Path) -> None:
    first, second = SqliteBackend(tmp_path / "c.sqlite"), SqliteBackend(tmp_path / "c.sqlite")
    await first.set("k", b"v", 60)
    await first.incr_float("spend", 1.5, 60)
    assert await second.get("k") == b"v"
    assert await second.get_float("spend") == pytest.approx(1.5)
    await first.aclose()
    await second.aclose()


async def test_redis_outage_degrades_to_misses_quickly() -> None:
    store = RedisBackend(f"redis://127.0.0.1:{dead_port()}/0", timeout_s=0.2, retry_after_s=30)
    started = time.perf_counter()
    assert await store.get("k") is None
    await store.set("k", b"v", 60)
    assert await store.incr_float("c", 1.0, 60) is None
    assert await store.get_float("c") is None
    for _ in range(50):  # once marked down, Redis is not even tried
        assert await store.get("k") is None
    assert time.perf_counter() - started < 1.0
    assert store.failures == 1 and not store.available
    await store.aclose()


async def test_redis_comes_back_after_retry_after(redis_namespace: str) -> None:
    clock = FakeClock()
    store = RedisBackend(REDIS_URL, namespace=redis_namespace, retry_after_s=5, clock=clock)
    store._down_until = clock.now + 5  # as after a failure
    await store.set("k", b"v", 60)
    assert await store.get("k") is None
    clock.now += 6
    await store.set("k", b"v", 60)
    assert await store.get("k") == b"v"
    await store.aclose()


async def test_keys_are_scoped_by_tenant_and_count_hits() -> None:
    caches = Caches(MemoryBackend(), CacheSettings(runs=True))
    await caches.store_run_result("acme", "What is X?", "fp", {"output": "x"})
    assert await caches.run_result("acme", "  what is   x ", "fp") == {"output": "x"}
    assert await caches.run_result("globex", "What is X?", "fp") is None
    assert await caches.run_result("acme", "What is X?", "other-tools") is None
    assert caches.hits["run"] == 1 and caches.misses["run"] == 2
    assert caches.hit_rate("run") == pytest.approx(1 / 3)


async def test_tool_results_only_cached_on_success() -> None:
    caches = Caches(MemoryBackend(), CacheSettings())
    calls: list[int] = []

    async def ok() -> str:
        calls.append(1)
        return "42"

    async def boom() -> str:
        calls.append(1)
        raise RuntimeError("backend down")

    assert await caches.tool_result("t", "calc", "v1", {"e": "6*7"}, ok) == "42"
    assert await caches.tool_result("t", "calc", "v1", {"e": "6*7"}, ok) == "42"
    assert len(calls) == 1
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await caches.tool_result("t", "calc", "v1", {"e": "1/0"}, boom)
    assert len(calls) == 3


def test_normalize_question() -> None:
    assert normalize_question("  What  IS the Revenue?? ") == "what is the revenue"
    assert normalize_question("ｗｈａｔ") == "what"


class BrokenBackend(MemoryBackend):
    """A backend whose every operation fails (a full disk, a corrupt file)."""

    name = "broken"

    async def get(self, key: str) -> bytes | None:
        raise OSError("disk I/O error")

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise OSError("disk I/O error")

    async def incr_float(self, key: str, amount: float, ttl_s: float) -> float | None:
        raise OSError("disk I/O error")

    async def get_float(self, key: str) -> float | None:
        raise OSError("disk I/O error")


async def test_a_failing_backend_is_a_miss_not_a_failure() -> None:
    from keel.cost.ledger import TenantLedger

    caches = Caches(BrokenBackend(), CacheSettings(runs=True))

    async def compute() -> str:
        return "fresh"

    assert await caches.tool_result("t", "calc", "v1", {"e": "1"}, compute) == "fresh"
    assert await caches.run_result("t", "q", "fp") is None
    await caches.store_run_result("t", "q", "fp", {"output": "x"})
    assert caches.misses["tool"] == 1 and caches.misses["run"] == 1
    ledger = TenantLedger(BrokenBackend())
    assert await ledger.add("t", 1_700_000_000.0, 0.5) == 0.5  # kept locally
    assert await ledger.spent("t", 1_700_000_000.0) == 0.5


async def test_a_model_call_is_scoped_only_where_model_replies_are_cached() -> None:
    """No scope where replies are not cached (nothing to hold for the call's length); an
    inner call without one still hides the outer call's scope, so a reply is stored only
    under the scope it was made in."""
    off = Caches(MemoryBackend(), CacheSettings(model_responses=False))
    on = Caches(MemoryBackend(), CacheSettings(model_responses=True))
    reply = [ChatGeneration(message=AIMessage("hi"))]
    with cache_scope(off, "acme", "m") as none:
        assert none is None
        await MODEL_RESPONSE_CACHE.aupdate("[]", "llm", reply)  # no scope: dropped
    with cache_scope(None, "acme", "m") as none:
        assert none is None
    with cache_scope(on, "acme", "m") as outer:
        assert outer is not None
        with cache_scope(off, "acme", "m") as inner:
            assert inner is None
            await MODEL_RESPONSE_CACHE.aupdate("[]", "llm", reply)
        assert outer.pending == []
        await MODEL_RESPONSE_CACHE.aupdate("[]", "llm", reply)
        assert len(outer.pending) == 1
