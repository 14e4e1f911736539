"""LangGraph's key-value store (`BaseStore`) from a URL, beside the checkpoints.

- `sqlite:///path` — `AsyncSqliteStore` on its own connection to the checkpoints' file.
- `postgresql://…` — `AsyncPostgresStore` on the pool given (the saver's), else its own.
- `memory://` — `InMemoryStore` (tests and throwaway runs).

Tables are set up on open. On SQLite and Postgres items may carry a TTL in minutes: a sweep
deletes expired items every `sweep_minutes` (Postgres also hides them as soon as they
expire). `InMemoryStore` has no TTL support: `supports_ttl` is False there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.store.base import BaseStore, TTLConfig
from langgraph.store.memory import InMemoryStore

from keel.checkpoints.savers import make_pool, set_up, sqlite_path
from keel.config import CheckpointPoolSettings
from keel.errors import ConfigError

__all__ = ["open_store"]

_SWEEPER_STOP_S = 5.0


@asynccontextmanager
async def open_store(
    url: str,
    *,
    pool: Any = None,
    pool_settings: CheckpointPoolSettings | None = None,
    sweep_minutes: int = 1,
) -> AsyncIterator[BaseStore]:
    """Open the store a checkpoint URL names, set up and sweeping; closed on exit.

    `pool`: an open `AsyncConnectionPool` to share (Postgres only), e.g. the saver's.
    """
    ttl = TTLConfig(refresh_on_read=True, omit_expired=True, sweep_interval_minutes=sweep_minutes)
    if url.startswith("memory://"):
        yield InMemoryStore()
    elif url.startswith("sqlite://"):
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        async with _sqlite_store_class().from_conn_string(str(path), ttl=ttl) as store:
            await store.setup()
            async with _sweeping(store):
                yield store
    elif url.startswith(("postgresql://", "postgres://")):
        async with _postgres_store(url, pool, pool_settings, ttl) as store:
            yield store
    else:
        raise ConfigError(
            f"KEEL_CHECKPOINT_URL: unsupported '{url}' (use sqlite:///, postgresql:// or memory://)"
        )


def _sqlite_store_class() -> Any:
    """`AsyncSqliteStore` with TTLs on: it stores and sweeps them, but its MRO takes
    `supports_ttl = False` from `BaseStore` before `BaseSqliteStore`'s True (langgraph
    checkpoint-sqlite 3.1.2), so `aput(ttl=…)` would be refused."""
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    class SqliteStore(AsyncSqliteStore):
        supports_ttl = True

    return SqliteStore


@asynccontextmanager
async def _postgres_store(
    url: str, pool: Any, settings: CheckpointPoolSettings | None, ttl: TTLConfig
) -> AsyncIterator[BaseStore]:
    from langgraph.store.postgres.aio import AsyncPostgresStore

    own = None
    if pool is None:
        settings = settings or CheckpointPoolSettings()
        own = pool = make_pool(url, settings)
        await own.open(wait=True, timeout=settings.timeout_s)
    try:
        store = AsyncPostgresStore(pool, ttl=ttl)
        await set_up(store.setup)
        async with _sweeping(store):
            yield store
    finally:
        if own is not None:
            await own.close()


@asynccontextmanager
async def _sweeping(store: Any) -> AsyncIterator[None]:
    """Run the store's TTL sweeper while open."""
    await store.start_ttl_sweeper()
    try:
        yield
    finally:
        await store.stop_ttl_sweeper(timeout=_SWEEPER_STOP_S)
