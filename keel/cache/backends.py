"""Cache storage: an in-memory LRU (the default) and a SQLite file; Redis is in `_redis`.

Every backend stores bytes under string keys with a TTL, and keeps float counters (the
tenant spend ledger uses them). Backends never raise on a miss; the Redis one also never
raises on an outage (it degrades to misses).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import aiosqlite

__all__ = ["CacheBackend", "MemoryBackend", "SqliteBackend"]


class CacheBackend(Protocol):
    """Where cache entries and counters live."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def incr_float(self, key: str, amount: float, ttl_s: float) -> float | None: ...

    async def get_float(self, key: str) -> float | None: ...

    async def aclose(self) -> None: ...


class MemoryBackend:
    """A bounded in-process LRU with per-entry expiry: fast, not shared across processes."""

    name = "memory"

    def __init__(
        self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._counters: dict[str, tuple[float, float]] = {}
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def incr_float(self, key: str, amount: float, ttl_s: float) -> float | None:
        now = self._clock()
        expires, value = self._counters.get(key, (now + ttl_s, 0.0))
        if expires <= now:
            expires, value = now + ttl_s, 0.0
        self._counters[key] = (expires, value + amount)
        return value + amount

    async def get_float(self, key: str) -> float | None:
        found = self._counters.get(key)
        if found is None or found[0] <= self._clock():
            return None
        return found[1]

    def __len__(self) -> int:
        return len(self._entries)

    async def aclose(self) -> None:
        self._entries.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS keel_cache (key TEXT PRIMARY KEY, value BLOB NOT NULL,
                                       expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS keel_counters (key TEXT PRIMARY KEY, value REAL NOT NULL,
                                          expires REAL NOT NULL);
"""


class SqliteBackend:
    """A SQLite file shared by the processes of one machine (WAL mode)."""

    name = "sqlite"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            async with self._lock:
                if self._db is None:
                    self._path.parent.mkdir(parents=True, exist_ok=True)
                    db = await aiosqlite.connect(self._path)
                    await db.execute("PRAGMA journal_mode=WAL")
                    await db.execute("PRAGMA busy_timeout=2000")
                    await db.executescript(_SCHEMA)
                    await db.commit()
                    self._db = db
        return self._db

    async def get(self, key: str) -> bytes | None:
        db = await self._conn()
        async with db.execute(
            "SELECT value FROM keel_cache WHERE key = ? AND expires > ?", (key, self._clock())
        ) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        db = await self._conn()
        now = self._clock()
        await db.execute(
            "INSERT INTO keel_cache (key, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
            (key, value, now + ttl_s),
        )
        await db.execute("DELETE FROM keel_cache WHERE expires <= ?", (now,))
        await db.commit()

    async def incr_float(self, key: str, amount: float, ttl_s: float) -> float | None:
        db = await self._conn()
        now = self._clock()
        await db.execute("DELETE FROM keel_counters WHERE key = ? AND expires <= ?", (key, now))
        await db.execute(
            "INSERT INTO keel_counters (key, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            (key, amount, now + ttl_s),
        )
        await db.commit()
        return await self.get_float(key)

    async def get_float(self, key: str) -> float | None:
        db = await self._conn()
        async with db.execute(
            "SELECT value FROM keel_counters WHERE key = ? AND expires > ?", (key, self._clock())
        ) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row else None

    async def aclose(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
