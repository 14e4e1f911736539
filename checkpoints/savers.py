"""Checkpoint savers from a URL.

- `sqlite:///path` — the embedded default (one file; parent folders are created).
- `postgresql://…` — production: one shared `psycopg_pool.AsyncConnectionPool`
  (autocommit, dict rows, no server-side prepared statements so PgBouncer works),
  `setup()` once at start-up.
- `memory://` — tests and throwaway runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from keel.errors import ConfigError

__all__ = ["open_saver", "sqlite_path"]

POOL_MAX_SIZE = 10


def sqlite_path(url: str) -> Path:
    """The file a `sqlite:///relative` or `sqlite:////absolute` URL names."""
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise ConfigError(f"KEEL_CHECKPOINT_URL: expected sqlite:///path, got '{url}'")
    return Path(url.removeprefix("sqlite:///"))


@asynccontextmanager
async def open_saver(url: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """Open the saver a URL names, set up and ready; closed on exit."""
    if url.startswith("memory://"):
        yield InMemorySaver()
    elif url.startswith("sqlite://"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()
            yield saver
    elif url.startswith(("postgresql://", "postgres://")):
        async with _postgres_saver(url) as saver:
            yield saver
    else:
        raise ConfigError(
            f"KEEL_CHECKPOINT_URL: unsupported '{url}' (use sqlite:///, postgresql:// or memory://)"
        )


@asynccontextmanager
async def _postgres_saver(url: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(
        conninfo=url,
        max_size=POOL_MAX_SIZE,
        kwargs={"autocommit": True, "prepare_threshold": None, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True, timeout=10)
    try:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver
    finally:
        await pool.close()
