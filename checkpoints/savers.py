"""Checkpoint storage from a URL: the saver and the idempotency journal beside it.

- `sqlite:///path` — the embedded default (one file; parent folders are created).
- `postgresql://…` — production: one shared `psycopg_pool.AsyncConnectionPool` (sized,
  timed out and health-checked by `CheckpointPoolSettings`; autocommit, dict rows, and no
  server-side prepared statements unless configured, so PgBouncer works), `setup()` once at
  start-up for both the saver's tables and the journal's.
- `memory://` — tests and throwaway runs.

Each saver writes compact channel versions (`keel.checkpoints.versions`): a store Keel's
savers wrote is opened with them (`open_storage`), not with LangGraph's stock savers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver

from keel.checkpoints.health import PeriodicCheck
from keel.checkpoints.journal import MemoryJournal, PostgresJournal, SqliteJournal
from keel.checkpoints.memory_saver import KeelMemorySaver
from keel.config import CheckpointPoolSettings
from keel.errors import ConfigError, StorageUnavailableError
from keel.journal import ToolJournal

__all__ = ["Storage", "open_saver", "open_storage", "set_up", "sqlite_path"]

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
        yield Storage("memory", KeelMemorySaver(), MemoryJournal())
    elif url.startswith("sqlite://"):
        from keel.checkpoints.sqlite_saver import KeelSqliteSaver

        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        async with KeelSqliteSaver.from_conn_string(str(path)) as saver:
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
        check=_check(settings),
        kwargs={
            "autocommit": True,
            "prepare_threshold": settings.prepare_threshold,
            "row_factory": dict_row,
        },
        open=False,
    )


def _check(settings: CheckpointPoolSettings) -> Any:
    from psycopg_pool import AsyncConnectionPool

    if not settings.health_check:
        return None
    if settings.health_check_interval_s <= 0:
        return AsyncConnectionPool.check_connection
    return PeriodicCheck(settings.health_check_interval_s)


@asynccontextmanager
async def _postgres_storage(url: str, settings: CheckpointPoolSettings) -> AsyncIterator[Storage]:
    from keel.checkpoints.postgres_saver import BatchedPostgresSaver

    pool = make_pool(url, settings)
    await pool.open(wait=True, timeout=settings.timeout_s)
    saver = BatchedPostgresSaver(pool)
    try:
        journal = PostgresJournal(pool)
        await set_up(saver.setup, journal.setup)
        yield Storage("postgres", saver, journal, pool)
    finally:
        try:
            await saver.aflush()  # writes still waiting for a checkpoint
        finally:
            await pool.close()


SETUP_ATTEMPTS = 8


async def set_up(*steps: Callable[[], Awaitable[None]]) -> None:
    """Run the tables' set-up, again if another process was setting them up at the same
    moment (`CREATE … IF NOT EXISTS` races on Postgres' catalog). No locks, so it works
    behind PgBouncer in transaction mode too."""
    import psycopg.errors as pg

    races = (pg.UniqueViolation, pg.DuplicateObject, pg.DuplicateTable, pg.DeadlockDetected)
    for attempt in range(SETUP_ATTEMPTS):
        try:
            for step in steps:
                await step()
            return
        except races as exc:
            if attempt == SETUP_ATTEMPTS - 1:
                raise StorageUnavailableError(f"checkpoint set-up kept racing: {exc}") from exc
            await asyncio.sleep(0.05 * (attempt + 1))
