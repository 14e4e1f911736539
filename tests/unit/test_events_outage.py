"""Run stream events when Redis is unreachable or hangs: publishing never raises (the run
goes on), reading raises `EventsUnavailable` (the API then follows the run record)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from keel.server import events as events_module
from keel.server.events import UNKNOWN_BOUNDS, EventsUnavailable, RedisEvents


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connections are refused


@pytest.fixture
def unreachable() -> RedisEvents:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    return RedisEvents(client, "keeltest:down")


async def test_publishing_to_an_unreachable_redis_drops_the_event(
    unreachable: RedisEvents,
) -> None:
    await unreachable.publish("r1", "values", {"a": 1})  # raised ConnectionError before
    started = time.monotonic()
    for _ in range(50):
        await unreachable.publish("r1", "updates", {"a": 1})
    assert unreachable.dropped == 51
    assert time.monotonic() - started < 0.5, "after a failure Redis is skipped for a while"


async def test_reading_from_an_unreachable_redis_says_so(unreachable: RedisEvents) -> None:
    with pytest.raises(EventsUnavailable):
        async for _ in unreachable.read("r1", block_ms=100):
            pass
    assert await unreachable.bounds("r1") == UNKNOWN_BOUNDS


class _HungRedis:
    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(3600)


async def test_a_hung_redis_read_ends_instead_of_waiting_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_module, "READ_GRACE_S", 0.1)
    hung = RedisEvents(_HungRedis(), "keeltest:hung")
    with pytest.raises(EventsUnavailable):
        async for _ in hung.read("r1", block_ms=50):
            pass
