"""Storage for a saver the caller opened: the idempotency journal on the saver's own database.

`open_agent(checkpointer=…)` hands Keel a saver it did not build. For the savers Keel knows,
the journal goes where `open_storage` would have put it:

- `InMemorySaver` → a `MemoryJournal`, one per saver object (agents sharing the saver share it);
- `AsyncSqliteSaver` → a `SqliteJournal` on the saver's connection, under the saver's lock;
- `AsyncPostgresSaver` → a `PostgresJournal` on the saver's pool, or on its single connection
  under the saver's lock. LangGraph requires that connection to be `autocommit=True`; Keel
  checks it, since an uncommitted journal row would not survive a crash.

Any other saver gets no journal (`adopt` returns None): the caller decides what that means.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from keel.checkpoints.journal import MemoryJournal, PostgresJournal, SqliteJournal
from keel.checkpoints.savers import Storage, set_up
from keel.errors import ConfigError

__all__ = ["adopt"]

_MEMORY_JOURNALS: weakref.WeakKeyDictionary[InMemorySaver, MemoryJournal] = (
    weakref.WeakKeyDictionary()
)


async def adopt(saver: BaseCheckpointSaver[Any]) -> Storage | None:
    """The store behind a caller's saver, its journal table set up; None for unknown savers."""
    if isinstance(saver, InMemorySaver):
        journal = _MEMORY_JOURNALS.setdefault(saver, MemoryJournal())
        return Storage("memory", saver, journal)
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if isinstance(saver, AsyncSqliteSaver):
        await saver.setup()  # connects the saver's connection if it is not yet
        sqlite_journal = SqliteJournal(saver.conn, saver.lock)
        await sqlite_journal.setup()
        return Storage("sqlite", saver, sqlite_journal)
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    if isinstance(saver, AsyncPostgresSaver):
        from psycopg_pool import AsyncConnectionPool

        pool: Any = saver.conn
        if not isinstance(pool, AsyncConnectionPool):
            pool = OneConnection(saver.conn, saver.lock)
        await _require_autocommit(pool)
        pg_journal = PostgresJournal(pool)
        await set_up(pg_journal.setup)
        return Storage("postgres", saver, pg_journal, pool)
    return None


class OneConnection:
    """A single psycopg connection shaped like a pool, used under the saver's lock."""

    def __init__(self, conn: Any, lock: Any) -> None:
        self.conn = conn
        self.lock = lock

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        async with self.lock:
            yield self.conn


async def _require_autocommit(pool: Any) -> None:
    async with pool.connection() as conn:
        if not conn.autocommit:
            raise ConfigError(
                "AsyncPostgresSaver's connection must be opened with autocommit=True "
                "(LangGraph requires it, and Keel's journal commits each record at once)"
            )
