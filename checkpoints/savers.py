"""Checkpoint storage from a URL: the saver and the idempotency journal beside it.

- `sqlite:///path` — the embedded default (one file; parent folders are created).
- `postgresql://…` — production: one shared `psycopg_pool.AsyncConnectionPool` (sized,
  timed out and health-checked by `CheckpointPoolSettings`; autocommit, dict rows, and no
  server-side prepared statements unless configured, so PgBouncer works), `setup()` once at
  start-up for both the saver's tables and the journal's.
- `memory://` — tests and throwaway runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from checkpoints.journal import MemoryJournal, PostgresJournal, SqliteJournal
from keel.config import CheckpointPoolSettings
from keel.errors import ConfigError, StorageUnavailableError
from keel.journal import ToolJournal

__all__ = ["Storage", "open_saver", "open_storage", "sqlite_path"]

Backend = Literal["memory", "sqlite", "postgres"]


@dataclass(frozen=True)
class Storage:
    """An open checkpoint store: the saver LangGraph writes, and Keel's journal beside it."""

    backend: Backend
    saver: BaseCheckpointSaver[Any]
    journal: ToolJournal
    pool: Any = None
    """The shared `AsyncConnectionPool` (Postgres only)."""


def sqlite_path(url: str) -> Path:
    """The file a `sqlite:///relative` or `sqlite:////absolute` URL names."""
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise ConfigError(f"KEEL_CHECKPOINT_URL: expected sqlite:///path, got '{url}'")
    return Path(url.removeprefix("sqlite:///"))


@asynccontextmanager
async def open_storage(
    url: str, pool: CheckpointPoolSettings | None = None
) -> AsyncIterator[Storage]:
    """Open the store a URL names, set up and ready; closed on exit."""
    if url.startswith("memory://"):
        yield Storage("memory", InMemorySaver(), MemoryJournal())
    elif url.startswith("sqlite://"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()
            journal = SqliteJournal(saver.conn, saver.lock)
            await journal.setup()
            yield Storage("sqlite", saver, journal)
    elif url.startswith(("postgresql://", "postgres://")):
        async with _postgres_storage(url, pool or CheckpointPoolSettings()) as storage:
            yield storage
    else:
        raise ConfigError(
            f"KEEL_CHECKPOINT_URL: unsupported '{url}' (use sqlite:///, postgresql:// or memory://)"
        )


@asynccontextmanager
async def open_saver(
    url: str, pool: CheckpointPoolSettings | None = None
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Open just the saver a URL names (its journal is opened too, but not handed out)."""
    async with open_storage(url, pool) as storage:
        yield storage.saver


def make_pool(url: str, settings: CheckpointPoolSettings) -> Any:
    """The shared pool, not yet opened, configured from settings."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    return AsyncConnectionPool(
        conninfo=url,
        min_size=min(settings.min_size, settings.max_size),
        max_size=settings.max_size,
        timeout=settings.timeout_s,
        max_idle=settings.max_idle_s,
        max_lifetime=settings.max_lifetime_s,
        check=AsyncConnectionPool.check_connection if settings.health_check else None,
        kwargs={
            "autocommit": True,
            "prepare_threshold": settings.prepare_threshold,
            "row_factory": dict_row,
        },
        open=False,
    )


@asynccontextmanager
async def _postgres_storage(url: str, settings: CheckpointPoolSettings) -> AsyncIterator[Storage]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    pool = make_pool(url, settings)
    await pool.open(wait=True, timeout=settings.timeout_s)
    try:
        saver = AsyncPostgresSaver(pool)
        journal = PostgresJournal(pool)
        async with _setup_lock(url, settings.timeout_s * 3):
            await saver.setup()
            await journal.setup()
        yield Storage("postgres", saver, journal, pool)
    finally:
        await pool.close()


SETUP_LOCK_KEY = 0x6B65656C_6A726E6C
"""Advisory lock taken while the tables are set up ("keel" "jrnl")."""


@asynccontextmanager
async def _setup_lock(url: str, timeout_s: float) -> AsyncIterator[None]:
    """One process at a time runs `setup()` (LangGraph's migrations race otherwise).

    The lock is polled with `pg_try_advisory_lock` on a connection of its own: a session
    blocked inside `pg_advisory_lock` would hold a snapshot that the saver's
    `CREATE INDEX CONCURRENTLY` waits for, a deadlock Postgres does not detect.
    """
    import psycopg

    deadline = time.monotonic() + timeout_s
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK_KEY,))
            row = await cur.fetchone()
            if row is not None and row[0]:
                break
            if time.monotonic() > deadline:
                raise StorageUnavailableError(
                    f"another process held the checkpoint set-up lock for {timeout_s:.0f} s"
                )
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
