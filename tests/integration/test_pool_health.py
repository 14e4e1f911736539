"""The checkpoint pool's periodic health check: no round trip for a recently verified
connection, yet a backend terminated while idle is never handed to a step."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from keel.checkpoints.health import PeriodicCheck
from keel.checkpoints.savers import make_pool
from keel.config import CheckpointPoolSettings
from tests.conftest import PG_ADMIN_URL, fresh_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database only this test uses, so terminating its backends touches nothing else."""
    with fresh_database("keel_health") as (url, _):
        yield url


def _terminate(pid: int) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        (ok,) = conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() or (False,)
    assert ok, f"backend {pid} was not terminated"


def _pool(url: str, interval_s: float) -> AsyncConnectionPool:
    settings = CheckpointPoolSettings(min_size=1, max_size=1, health_check_interval_s=interval_s)
    return make_pool(url, settings)  # type: ignore[no-any-return]


async def test_recently_verified_connection_is_not_queried_again(own_database: str) -> None:
    pool = _pool(own_database, 60.0)
    check = pool._check
    assert isinstance(check, PeriodicCheck)
    async with pool:
        for _ in range(20):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        assert check.full_checks == 1, "only the first checkout sent the empty query"


async def test_verification_expires_after_the_interval(own_database: str) -> None:
    pool = _pool(own_database, 0.05)
    check = pool._check
    assert isinstance(check, PeriodicCheck)
    async with pool:
        for _ in range(3):
            async with pool.connection():
                pass
            await asyncio.sleep(0.08)
        assert check.full_checks == 3


async def test_backend_terminated_while_idle_is_replaced_before_use(own_database: str) -> None:
    pool = _pool(own_database, 60.0)
    check = pool._check
    assert isinstance(check, PeriodicCheck)
    async with pool:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT pg_backend_pid()")
            row = await cur.fetchone()
            assert row is not None
            first_pid = row["pg_backend_pid"]
        _terminate(first_pid)
        async with pool.connection() as conn:  # must not raise: the dead one was discarded
            cur = await conn.execute("SELECT pg_backend_pid()")
            row = await cur.fetchone()
            assert row is not None
            assert row["pg_backend_pid"] != first_pid
        assert check.full_checks >= 2, "the server's farewell triggered a real check"


def test_interval_zero_checks_every_checkout_and_off_means_no_check() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/unused"
    every = make_pool(url, CheckpointPoolSettings(health_check_interval_s=0))
    assert every._check is AsyncConnectionPool.check_connection
    off = make_pool(url, CheckpointPoolSettings(health_check=False))
    assert off._check is None
