"""Background runs on procrastinate, a Postgres task queue: the API defers, workers execute.

Each run is one job of task `keel.execute_run` on queue `keel-runs`, locked by its thread id:
procrastinate runs jobs sharing a lock one at a time, in order, which is exactly "one run
per thread, the rest enqueued". Workers send heartbeats; a worker that stops sending them
(killed, machine lost) is pruned, and `retry_stalled_jobs` puts its jobs back in the queue,
where another worker continues each run from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
import structlog
from procrastinate.schema import SchemaManager

from keel.checkpoints.health import PeriodicCheck

__all__ = [
    "QUEUE",
    "TASK",
    "QueueConnector",
    "RunQueue",
    "ThreadFence",
    "ensure_queue_schema",
    "make_queue_app",
    "retry_stalled_jobs",
    "startup_lock",
]

log = structlog.get_logger("keel.server.queue")

TASK = "keel.execute_run"
QUEUE = "keel-runs"
_SCHEMA_LOCK = 0x6B65656D
LOCK_POLL_S = 0.1


def _conninfo(url: str) -> str:
    return "postgresql://" + url.removeprefix("postgres://").removeprefix("postgresql://")


async def _lock(conn: psycopg.AsyncConnection[Any], key: int | str, *, query: str = "%s") -> None:
    """Take a session advisory lock by polling `pg_try_advisory_lock`.

    The lock's key is `query` (an SQL expression of `key`, by default the key itself).

    A session blocked in `pg_advisory_lock` sits in an open statement, and a concurrent
    `CREATE INDEX CONCURRENTLY` (the checkpointer's setup) waits for it: a deadlock
    Postgres does not detect. Polling keeps every wait outside a statement.
    """
    while True:
        cursor = await conn.execute(f"SELECT pg_try_advisory_lock({query})", (key,))
        got = await cursor.fetchone()
        if got is not None and got[0]:
            return
        await asyncio.sleep(LOCK_POLL_S)


QUEUE_CHECK_S = 1.0
"""A queue connection is health-checked by a round trip at most this often."""


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


def _queue_pool(**kwargs: Any) -> psycopg_pool.AsyncConnectionPool[Any]:
    """procrastinate's pool, minus two round trips a query.

    Every query procrastinate sends is one statement (mostly one function call), so its
    connections run in autocommit: no BEGIN / COMMIT around each. And the empty-query check
    on every checkout becomes a `PeriodicCheck`, as on the checkpoint pool.
    """
    kwargs["check"] = PeriodicCheck(QUEUE_CHECK_S)
    kwargs["configure"] = _autocommit
    return psycopg_pool.AsyncConnectionPool(**kwargs)


LISTEN_RETRY_S = 1.0
"""How often the queue's LISTEN connection tries again while the database is unreachable."""


class QueueConnector(procrastinate.PsycopgConnector):
    """procrastinate's psycopg connector, with a LISTEN that outlives database outages.

    procrastinate reopens its LISTEN connection once when it breaks; if the server is still
    down at that moment the listener ends, and a worker stops when any of its side tasks
    ends: a Postgres restart of a few seconds took every worker down. Here the listener
    keeps trying (jobs are also polled every second, so nothing waits meanwhile).
    """

    async def listen_notify(self, on_notification: Any, channels: Iterable[str]) -> None:
        channels = list(channels)
        while True:
            try:
                await super().listen_notify(on_notification=on_notification, channels=channels)
            except procrastinate.exceptions.ConnectorException as exc:
                log.warning("queue.listener_reconnecting", error=str(exc.__cause__ or exc)[:200])
                await asyncio.sleep(LISTEN_RETRY_S)


def make_queue_app(db_url: str, *, max_connections: int = 4) -> procrastinate.App:
    """A procrastinate app on the service database (open it with `app.open_async()`)."""
    connector = QueueConnector(
        conninfo=_conninfo(db_url),
        min_size=1,
        max_size=max_connections,
        pool_factory=_queue_pool,
    )
    return procrastinate.App(connector=connector)


async def ensure_queue_schema(db_url: str) -> None:
    """Install procrastinate's tables once (several processes may start together)."""
    async with await psycopg.AsyncConnection.connect(_conninfo(db_url), autocommit=True) as conn:
        await _lock(conn, _SCHEMA_LOCK)
        try:
            cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs')")
            found = await cursor.fetchone()
            if found is None or found[0] is None:
                await conn.execute(SchemaManager.get_schema())
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


_THREAD_KEY = "hashtextextended(%s, 0)"


FENCE_RECONNECT_S = 60.0
"""How long the fence keeps reconnecting to a database that went away before a job fails
(procrastinate then retries the job: the run continues from its checkpoint)."""


class ThreadFence:
    """Postgres advisory locks on threads, held while a worker executes their runs.

    The locks live on one connection of the worker's own, so they all go away the moment
    the worker dies: a worker wrongly declared dead (a stalled event loop) still blocks the
    worker that took its job over until it is really done, and no thread ever runs in two
    processes at once.

    The connection is reopened whenever it is found closed or broken (a server restart, a
    terminated backend), and the locks it held are taken again on the new one: a restart
    of Postgres costs the worker a reconnect, never its ability to run jobs.
    """

    def __init__(self, db_url: str, *, reconnect_s: float = FENCE_RECONNECT_S) -> None:
        self.db_url = db_url
        self.reconnect_s = reconnect_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._held: dict[str, int] = {}
        """Lock names this worker holds, with how many of its runs hold each."""
        self._reconnecting = asyncio.Lock()
        self.reconnects = 0

    async def open(self) -> None:
        self._conn = await self._connect()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            _conninfo(self.db_url), autocommit=True, connect_timeout=5
        )

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """The live connection, reopened (and the held locks retaken) if it died."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        async with self._reconnecting:
            if self._conn is not conn and self._conn is not None and not self._conn.closed:
                return self._conn  # another task reconnected meanwhile
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            fresh = await self._connect()
            self.reconnects += 1
            for name in self._held:
                cursor = await fresh.execute(f"SELECT pg_try_advisory_lock({_THREAD_KEY})", (name,))
                got = await cursor.fetchone()
                if got is None or not got[0]:
                    log.warning("queue.fence_lock_lost", lock=name)
            self._conn = fresh
            log.info("queue.fence_reconnected", held=len(self._held))
            return fresh

    async def _acquire(self, name: str) -> None:
        """Take the lock, through any number of reconnects within `reconnect_s`."""
        deadline = asyncio.get_running_loop().time() + self.reconnect_s
        delay = 0.1
        while True:
            try:
                conn = await self._connection()
                await _lock(conn, name, query=_THREAD_KEY)
                return
            except psycopg.OperationalError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("queue.fence_unavailable", error=str(exc)[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    @asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        assert self._conn is not None, "open the fence first"
        name = f"keel:thread:{thread_id}"
        await self._acquire(name)
        self._held[name] = self._held.get(name, 0) + 1
        try:
            yield
        finally:
            self._held[name] -= 1
            if not self._held[name]:
                del self._held[name]
            with contextlib.suppress(Exception):
                conn = await self._connection()
                await conn.execute(f"SELECT pg_advisory_unlock({_THREAD_KEY})", (name,))


@asynccontextmanager
async def startup_lock(url: str) -> AsyncIterator[None]:
    """One process at a time sets up its Postgres tables (the checkpointer's `setup()` is
    not safe to run from two processes at once). No-op for other databases."""
    if not url.startswith(("postgresql://", "postgres://")):
        yield
        return
    async with await psycopg.AsyncConnection.connect(_conninfo(url), autocommit=True) as conn:
        await _lock(conn, _SCHEMA_LOCK + 1)
        yield


async def retry_stalled_jobs(app: procrastinate.App, seconds_since_heartbeat: float) -> int:
    """Requeue the runs of workers whose heartbeat stopped; returns how many."""
    retried = 0
    for job in await app.job_manager.get_stalled_jobs(
        queue=QUEUE, task_name=TASK, seconds_since_heartbeat=seconds_since_heartbeat
    ):
        try:
            await app.job_manager.retry_job(job)
        except Exception as exc:  # another worker retried it first
            log.debug("queue.retry_skipped", job_id=job.id, error=str(exc))
            continue
        log.warning("queue.stalled_job_retried", job_id=job.id, run_id=job.task_kwargs)
        retried += 1
    return retried


class RunQueue:
    """The API side: defer runs, and cancel them wherever they are."""

    def __init__(self, app: procrastinate.App) -> None:
        self.app = app

    async def defer(self, run_id: str, thread_id: str, *, after_seconds: float = 0) -> int:
        options: dict[str, Any] = {"lock": thread_id, "queue": QUEUE}
        if after_seconds:
            options["schedule_in"] = {"seconds": after_seconds}
        deferrer = self.app.configure_task(TASK, **options)
        job_id: int = await deferrer.defer_async(run_id=run_id)
        return job_id

    async def cancel(self, run_id: str, thread_id: str) -> bool:
        """Cancel a waiting job, or ask the worker running it to abort; False if none."""
        found = False
        for job in await self.app.job_manager.list_jobs_async(task=TASK, lock=thread_id):
            if job.task_kwargs.get("run_id") != run_id or job.id is None:
                continue
            if job.status in ("todo", "doing"):
                with contextlib.suppress(Exception):
                    await self.app.job_manager.cancel_job_by_id_async(job.id, abort=True)
                found = True
        return found

    async def wait_stopped(self, run_id: str, thread_id: str, *, within_s: float = 30) -> bool:
        """Wait until no worker runs (or will run) the run's job; False on timeout."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            jobs = await self.app.job_manager.list_jobs_async(task=TASK, lock=thread_id)
            if not any(
                j.task_kwargs.get("run_id") == run_id
                and str(getattr(j.status, "value", j.status)) in ("todo", "doing")
                for j in jobs
            ):
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(LOCK_POLL_S)


async def stalled_job_reaper(
    app: procrastinate.App, *, every_s: float, seconds_since_heartbeat: float
) -> None:
    """Forever: requeue jobs of dead workers (run beside each worker)."""
    while True:
        with contextlib.suppress(Exception):
            await retry_stalled_jobs(app, seconds_since_heartbeat)
        await asyncio.sleep(every_s)
