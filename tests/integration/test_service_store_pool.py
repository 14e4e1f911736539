"""Keel's tables are reached through a fixed pool: load waits for a connection instead of
opening and closing extra ones (each a new Postgres backend)."""

from __future__ import annotations

import asyncio

import psycopg

from keel.server.store import Store


def _backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_store_never_holds_more_connections_than_its_pool(postgres_url: str) -> None:
    before = _backends(postgres_url)
    store = Store.open(postgres_url, pool_size=3)
    try:
        await store.migrate()
        peak = 0

        async def one() -> None:
            nonlocal peak
            await store.count_runs(["pending"])
            peak = max(peak, _backends(postgres_url) - before)

        await asyncio.gather(*(one() for _ in range(40)))
        assert store.engine.pool.size() == 3
        assert 1 <= peak <= 3
        pids_now = _backends(postgres_url) - before
        assert pids_now <= 3  # nothing opened beyond the pool, nothing left over
    finally:
        await store.close()
