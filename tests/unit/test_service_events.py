"""The API's blocking read of a run's event stream fits inside the Redis client's timeout."""

from __future__ import annotations

import inspect
from pathlib import Path

from keel.config import load_settings
from keel.server.events import RedisEvents
from keel.server.worker import redis_events


async def test_blocking_read_stays_under_the_socket_timeout(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    block_ms = inspect.signature(RedisEvents.read).parameters["block_ms"].default
    async with redis_events(settings) as events:  # builds the client; connects on first use
        assert events is not None
        timeout = events.redis.connection_pool.connection_kwargs.get("socket_timeout")
    # a read blocked as long as the timeout fails with TimeoutError (a 500 for `wait`)
    assert timeout is None or block_ms / 1000 <= timeout - 1, (block_ms, timeout)
    assert block_ms >= 2000, "short blocks turn the read's fallback into a status poll"
