"""Keel's tables are reached through a fixed pool: load waits for a connection instead of
opening and closing extra ones (each a new Postgres backend)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random

import psycopg

from keel.server.store import Store
from tests.conftest import fresh_database


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


async def test_callers_cancelled_during_checkout_leave_no_connection_behind() -> None:
    """A caller cancelled while the pool connects or pings (a client that hung up on a
    stream, a cancelled run) gets no connection, and none is left checked out or open on
    the server: without the garbage collector's help, which may come late or never."""
    with fresh_database("keel_cancel") as (url, _):
        store = Store.open(url, pool_size=2)
        gc.disable()
        try:
            await store.migrate()
            rng = random.Random(7)
            for _ in range(CANCELLED):
                task = asyncio.create_task(store.ping())
                for _ in range(rng.randint(0, 6)):
                    await asyncio.sleep(0)
                await asyncio.sleep(rng.random() * 0.002)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for _ in range(200):  # the last connections are handed back as checkouts end
                if store.engine.pool.checkedout() == 0:
                    break
                await asyncio.sleep(0.01)
            assert store.engine.pool.checkedout() == 0
            assert _backends(url) <= 2
            await asyncio.wait_for(asyncio.gather(*(store.ping() for _ in range(4))), 10)
        finally:
            gc.enable()
            await store.close()


CANCELLED = 60
"""Cancelled callers: before the fix 14-17 of them left a connection open on the server
with the collector off, so more would risk the shared server's connection limit."""
