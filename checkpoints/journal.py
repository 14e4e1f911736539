"""The idempotency journal, in the same database as the checkpoints.

One table, `keel_tool_journal`, keyed `thread_id:tool_call_id`. Each write commits before
the caller goes on (Postgres: autocommit; SQLite: commit per write), whatever the graph's
durability mode, so a completed effect is never repeated even when checkpoints lag.
Connection failures become `StorageUnavailableError`: the step is retried, not misreported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keel.errors import StorageUnavailableError
from keel.journal import JournalEntry, JournalStatus

if TYPE_CHECKING:
    import aiosqlite
    from psycopg_pool import AsyncConnectionPool

__all__ = ["MemoryJournal", "PostgresJournal", "SqliteJournal", "thread_of"]

TABLE = "keel_tool_journal"


def thread_of(key: str) -> str:
    """The thread id part of a `thread_id:tool_call_id` key."""
    return key.rpartition(":")[0]


class MemoryJournal:
    """For `memory://` checkpoints: lives exactly as long as the in-memory saver."""

    def __init__(self) -> None:
        self.entries: dict[str, JournalEntry] = {}

    async def get(self, key: str) -> JournalEntry | None:
        return self.entries.get(key)

    async def start(
        self, key: str, *, tool: str, arguments: str, run_id: str | None, attempt: int = 0
    ) -> None:
        self.entries[key] = JournalEntry(key, "started", tool, arguments, None, run_id, attempt)

    async def finish(self, key: str, *, status: JournalStatus, result: str) -> None:
        self.entries[key] = replace(self.entries[key], status=status, result=result)

    async def delete_threads(self, thread_ids: list[str]) -> int:
        wanted = set(thread_ids)
        doomed = [k for k in self.entries if thread_of(k) in wanted]
        for k in doomed:
            del self.entries[k]
        return len(doomed)

    async def copy_thread(self, source: str, target: str) -> int:
        found = [e for k, e in self.entries.items() if thread_of(k) == source]
        for e in found:
            key = f"{target}:{e.key.rpartition(':')[2]}"
            self.entries[key] = replace(e, key=key)
        return len(found)


_PG_SETUP = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key text PRIMARY KEY,
    thread_id text NOT NULL,
    status text NOT NULL,
    tool text NOT NULL,
    arguments text NOT NULL,
    result text,
    run_id text,
    attempt integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {TABLE}_thread ON {TABLE} (thread_id);
"""


_COLUMNS = "status, tool, arguments, result, run_id, attempt, started_at, finished_at"
_COPY_SELECT = (
    f"SELECT {{target}} || substr(key, length(thread_id) + 1), {{target}}, {_COLUMNS} "
    f"FROM {TABLE} WHERE thread_id = {{source}}"
)
"""A source row under the target's key: the key's `:tool_call_id` tail kept, one statement
(so the copy is all or nothing)."""
_PG_COPY = (
    f"INSERT INTO {TABLE} (key, thread_id, {_COLUMNS}) "
    + _COPY_SELECT.format(target="%s", source="%s")
    + " ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", "))
)


class PostgresJournal:
    """Journal rows in the checkpoint database, through the saver's shared pool (or anything
    with the pool's `connection()`, such as `checkpoints.adopt.OneConnection`)."""

    def __init__(self, pool: AsyncConnectionPool[Any] | Any) -> None:
        self.pool = pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        import psycopg

        try:
            async with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailableError(f"journal: {type(exc).__name__}: {exc}") from exc

    async def setup(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(_PG_SETUP)

    async def get(self, key: str) -> JournalEntry | None:
        from psycopg.rows import dict_row

        # dict rows whatever the connection's default (a caller's saver may use tuples)
        async with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT status, tool, arguments, result, run_id, attempt FROM {TABLE} "
                "WHERE key = %s",
                (key,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return JournalEntry(
            key,
            row["status"],
            row["tool"],
            row["arguments"],
            row["result"],
            row["run_id"],
            row["attempt"],
        )

    async def start(
        self, key: str, *, tool: str, arguments: str, run_id: str | None, attempt: int = 0
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(
                f"INSERT INTO {TABLE} (key, thread_id, status, tool, arguments, run_id, attempt) "
                "VALUES (%s, %s, 'started', %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "status = 'started', tool = EXCLUDED.tool, arguments = EXCLUDED.arguments, "
                "run_id = EXCLUDED.run_id, attempt = EXCLUDED.attempt, result = NULL, "
                "started_at = now(), finished_at = NULL",
                (key, thread_of(key), tool, arguments, run_id, attempt),
            )

    async def finish(self, key: str, *, status: JournalStatus, result: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                f"UPDATE {TABLE} SET status = %s, result = %s, finished_at = now() WHERE key = %s",
                (status, result, key),
            )

    async def delete_threads(self, thread_ids: list[str]) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(
                f"DELETE FROM {TABLE} WHERE thread_id = ANY(%s)", (thread_ids,)
            )
            return cur.rowcount

    async def copy_thread(self, source: str, target: str) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(_PG_COPY, (target, target, source))
            return cur.rowcount


_SQLITE_SETUP = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    status TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    result TEXT,
    run_id TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS {TABLE}_thread ON {TABLE} (thread_id);
"""


class SqliteJournal:
    """Journal rows in the checkpoint file, on the saver's connection and under its lock."""

    def __init__(self, conn: aiosqlite.Connection, lock: Any) -> None:
        self.conn = conn
        self.lock = lock

    async def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        import sqlite3

        async with self.lock:
            try:
                cur = await self.conn.execute(sql, params)
                await self.conn.commit()
            except sqlite3.OperationalError as exc:
                raise StorageUnavailableError(f"journal: {exc}") from exc
            return cur.rowcount

    async def setup(self) -> None:
        async with self.lock:
            await self.conn.executescript(_SQLITE_SETUP)
            cur = await self.conn.execute(f"PRAGMA table_info({TABLE})")
            if "attempt" not in {row[1] for row in await cur.fetchall()}:
                await self.conn.execute(
                    f"ALTER TABLE {TABLE} ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0"
                )
            await self.conn.commit()

    async def get(self, key: str) -> JournalEntry | None:
        async with self.lock:
            cur = await self.conn.execute(
                f"SELECT status, tool, arguments, result, run_id, attempt FROM {TABLE} "
                "WHERE key = ?",
                (key,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return JournalEntry(key, row[0], row[1], row[2], row[3], row[4], row[5])

    async def start(
        self, key: str, *, tool: str, arguments: str, run_id: str | None, attempt: int = 0
    ) -> None:
        await self._write(
            f"INSERT OR REPLACE INTO {TABLE} "
            "(key, thread_id, status, tool, arguments, run_id, attempt) "
            "VALUES (?, ?, 'started', ?, ?, ?, ?)",
            (key, thread_of(key), tool, arguments, run_id, attempt),
        )

    async def finish(self, key: str, *, status: JournalStatus, result: str) -> None:
        await self._write(
            f"UPDATE {TABLE} SET status = ?, result = ?, finished_at = CURRENT_TIMESTAMP "
            "WHERE key = ?",
            (status, result, key),
        )

    async def delete_threads(self, thread_ids: list[str]) -> int:
        total = 0
        for thread_id in thread_ids:
            total += await self._write(f"DELETE FROM {TABLE} WHERE thread_id = ?", (thread_id,))
        return total

    async def copy_thread(self, source: str, target: str) -> int:
        return await self._write(
            f"INSERT OR REPLACE INTO {TABLE} (key, thread_id, {_COLUMNS}) "
            + _COPY_SELECT.format(target="?", source="?"),
            (target, target, source),
        )
