"""Keel's own records (threads, runs, tenants, API keys) in SQL through SQLAlchemy.

One `Store` per process wraps an async engine: SQLite (aiosqlite) when embedded,
Postgres (psycopg) in production. `migrate()` brings the schema to the latest Alembic
revision at start-up; on Postgres it holds an advisory lock so several API processes
starting together do not race.

Thread ids are per tenant: two tenants may each have a thread `t1`. What the client sees
is the thread's id; what keys its checkpoints, journal rows, runs, queue jobs and locks is
its *key* (`ThreadRecord.key`, stored with the thread), unique across tenants:
`<tenant>/<thread id>` (ids cannot hold a `/`, so the id is what follows the last one),
and the bare id for the `default` tenant (a service without API keys) and for every
thread made before keys existed, so their checkpoints are found where they were written.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from keel.checkpoints.outage import is_storage_outage
from keel.config import Settings
from keel.errors import ConfigError
from keel.server.engine import open_engine
from keel.server.tables import api_keys, runs, tenants, threads

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "DEFAULT_TENANT",
    "ApiKey",
    "RunRecord",
    "Store",
    "ThreadRecord",
    "hash_key",
    "is_db_outage",
    "metadata_matches",
    "public_thread_id",
    "service_db_url",
    "thread_key",
    "through_outage",
]

ACTIVE_RUN_STATUSES = ("pending", "running")
DEFAULT_TENANT = "default"
"""The tenant of requests without an API key (a service that does not require them)."""
KEY_SEPARATOR = "/"
"""Between the tenant and the thread id in a thread's key; never in a thread id."""
PING_IDLE_S = 1.0
"""A pooled connection idle for longer is pinged before use (a busy pool pings nothing)."""
OUTAGE_FIRST_DELAY_S = 0.05
OUTAGE_MAX_DELAY_S = 2.0
_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6B65656C  # "keel"


def service_db_url(settings: Settings) -> str:
    """Where Keel's tables live: configured, else beside Postgres checkpoints, else SQLite."""
    url = settings.service.db_url
    if url is None:
        if settings.checkpoint_url.startswith(("postgresql://", "postgres://")):
            url = settings.checkpoint_url
        else:
            url = f"sqlite:///{settings.home / 'service.sqlite'}"
    return url


def _async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{path}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    raise ConfigError(
        f"KEEL_SERVICE__DB_URL: expected sqlite:///path or postgresql://…, got {url!r}"
    )


def ping_idle_connections(engine: AsyncEngine, idle_s: float = PING_IDLE_S) -> None:
    """Check a connection at checkout only when it sat idle for `idle_s` or more.

    SQLAlchemy's `pool_pre_ping` costs a round trip on every checkout; a connection
    handed back moments ago is alive, and one the server dropped meanwhile still gets
    caught: the pool replaces it and retries with a fresh one.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["keel_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("keel_idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            alive = engine.sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("the connection failed its ping")


T = TypeVar("T")


def is_db_outage(exc: BaseException) -> bool:
    """True when the store's database is briefly gone (dropped connection, refused
    connection, pool timeout), not when the statement itself was wrong."""
    if isinstance(exc, DisconnectionError | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or (exc.orig is not None and is_storage_outage(exc.orig))
    return is_storage_outage(exc)


async def through_outage(
    write: Callable[[], Awaitable[T]],
    *,
    within_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run an idempotent store call, trying again with backoff while the database is out,
    for up to `within_s` seconds of waiting: a restart of Postgres shorter than that delays
    a run's status write instead of failing the run."""
    delay, waited = OUTAGE_FIRST_DELAY_S, 0.0
    while True:
        try:
            return await write()
        except Exception as exc:
            if not is_db_outage(exc) or waited >= within_s:
                raise
            await sleep(delay)
            waited += delay
            delay = min(delay * 2, OUTAGE_MAX_DELAY_S)


def thread_key(tenant_id: str, thread_id: str, *, bare: bool | None = None) -> str:
    """The key of tenant `tenant_id`'s thread `thread_id` (see the module's docstring);
    `bare`: the id alone (the default tenant's, when no other thread holds it)."""
    if bare is None:
        bare = tenant_id == DEFAULT_TENANT
    return thread_id if bare else f"{tenant_id}{KEY_SEPARATOR}{thread_id}"


def public_thread_id(key: str) -> str:
    """The thread id a client knows for the thread keyed `key`."""
    return key.rpartition(KEY_SEPARATOR)[2]


def metadata_matches(metadata: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """A search's metadata filter: every wanted key present with exactly that value."""
    return all(metadata.get(k) == v for k, v in wanted.items())


def now() -> datetime:
    return datetime.now(UTC)


def hash_key(key: str) -> str:
    """API keys are stored as SHA-256 digests: they are long random tokens, so no KDF needed."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ThreadRecord:
    thread_id: str
    """The id its tenant knows it by."""
    tenant_id: str
    status: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    key: str
    """What keys its checkpoints, journal rows and runs (unique across tenants)."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    thread_id: str
    """The key of the run's thread (`ThreadRecord.key`; `public_thread_id` gives its id)."""
    tenant_id: str
    assistant_id: str
    status: str
    multitask_strategy: str
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    role: str
    created_at: datetime
    secret: str | None = field(default=None, repr=False)
    """The plain key: only known right after `create_key`."""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _thread(row: Any) -> ThreadRecord:
    m = row._mapping
    return ThreadRecord(
        thread_id=m["thread_id"],
        tenant_id=m["tenant_id"],
        status=m["status"],
        metadata=dict(m["metadata"] or {}),
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
        key=m["thread_key"],
    )


def _run(row: Any) -> RunRecord:
    m = row._mapping
    return RunRecord(
        run_id=m["run_id"],
        thread_id=m["thread_id"],
        tenant_id=m["tenant_id"],
        assistant_id=m["assistant_id"],
        status=m["status"],
        multitask_strategy=m["multitask_strategy"],
        metadata=dict(m["metadata"] or {}),
        kwargs=dict(m["kwargs"] or {}),
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
        error=m["error"],
        attempt=m["attempt"] or 0,
    )


class Store:
    """Async access to Keel's tables; every query about a thread or run names its tenant."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        """Transactions: statements that must commit together, and migrations."""
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        """Single statements: one round trip each, no BEGIN / COMMIT around them."""

    @classmethod
    def open(cls, url: str, *, pool_size: int = 10) -> Store:
        """The store on `url`; on Postgres a fixed pool of `pool_size` connections."""
        if url.startswith("sqlite"):
            return cls(open_engine(_async_url(url), pool_pre_ping=True))
        engine = open_engine(_async_url(url), pool_size=pool_size, max_overflow=0, pool_timeout=30)
        ping_idle_connections(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Upgrade the schema to the latest revision."""

        def upgrade(conn: Connection) -> None:
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            await conn.run_sync(upgrade)

    async def ping(self) -> None:
        async with self._auto.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # threads ---------------------------------------------------------------------------

    async def create_thread(
        self, thread_id: str, tenant_id: str, metadata: dict[str, Any]
    ) -> ThreadRecord | None:
        """Insert the tenant's thread; None when the tenant already has one of this id.

        Another tenant's thread of the same id is no obstacle: the two have different keys.
        Only a default-tenant thread whose bare id is the key of an older thread (one made
        before thread ids were per tenant) is keyed `default/<id>` instead.
        """
        for bare in (True, False) if tenant_id == DEFAULT_TENANT else (False,):
            key = thread_key(tenant_id, thread_id, bare=bare)
            at = now()
            try:
                async with self._auto.begin() as conn:
                    await conn.execute(
                        threads.insert().values(
                            thread_id=thread_id,
                            tenant_id=tenant_id,
                            thread_key=key,
                            status="idle",
                            metadata=metadata,
                            created_at=at,
                            updated_at=at,
                        )
                    )
            except IntegrityError:
                if await self.get_thread(thread_id, tenant_id) is not None:
                    return None
                continue  # the key is an older thread's: take the other one
            return ThreadRecord(thread_id, tenant_id, "idle", metadata, at, at, key)
        return None

    async def get_thread(self, thread_id: str, tenant_id: str) -> ThreadRecord | None:
        async with self._auto.connect() as conn:
            row = (
                await conn.execute(
                    select(threads).where(
                        threads.c.thread_id == thread_id, threads.c.tenant_id == tenant_id
                    )
                )
            ).first()
        return _thread(row) if row else None

    async def thread_graph(self, key: str) -> str | None:
        """The graph id the state of the thread keyed `key` belongs to (`metadata.graph_id`)."""
        query = select(threads.c.metadata).where(threads.c.thread_key == key)
        async with self._auto.connect() as conn:
            found = (await conn.execute(query)).scalar_one_or_none()
        graph_id = found.get("graph_id") if isinstance(found, dict) else None
        return str(graph_id) if graph_id else None

    async def search_threads(
        self,
        tenant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        status: str | None = None,
        ids: Sequence[str] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[ThreadRecord]:
        found = await self._matching_threads(tenant_id, metadata, status, ids)
        return found[offset : offset + limit]

    async def count_threads(
        self, tenant_id: str, *, metadata: dict[str, Any] | None = None, status: str | None = None
    ) -> int:
        return len(await self._matching_threads(tenant_id, metadata, status, None))

    async def _matching_threads(
        self,
        tenant_id: str,
        metadata: dict[str, Any] | None,
        status: str | None,
        ids: Sequence[str] | None,
    ) -> list[ThreadRecord]:
        """The tenant's threads matching the filters, newest first."""
        query = select(threads).where(threads.c.tenant_id == tenant_id)
        if status:
            query = query.where(threads.c.status == status)
        if ids:
            query = query.where(threads.c.thread_id.in_(list(ids)))
        query = query.order_by(threads.c.created_at.desc())
        async with self._auto.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = [_thread(r) for r in rows]
        if metadata:
            found = [t for t in found if metadata_matches(t.metadata, metadata)]
        return found

    async def update_thread(
        self,
        key: str,
        *,
        status: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {"updated_at": now()}
        if status is not None:
            values["status"] = status
        if metadata is not None:
            values["metadata"] = metadata
        async with self._auto.begin() as conn:
            await conn.execute(update(threads).where(threads.c.thread_key == key).values(**values))

    async def delete_thread(self, key: str, tenant_id: str) -> bool:
        """Delete the tenant's thread keyed `key` and its runs."""
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(threads).where(threads.c.thread_key == key, threads.c.tenant_id == tenant_id)
            )
            if gone.rowcount:
                await conn.execute(delete(runs).where(runs.c.thread_id == key))
        return bool(gone.rowcount)

    # runs ------------------------------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        """Insert the run; again with the same run id is a no-op (a retry after an outage
        that cut the connection off after the insert committed)."""
        try:
            await self._insert_run(record)
        except IntegrityError:
            if await self.get_run_any(record.run_id) is None:
                raise

    async def _insert_run(self, record: RunRecord) -> None:
        async with self._auto.begin() as conn:
            await conn.execute(
                runs.insert().values(
                    run_id=record.run_id,
                    thread_id=record.thread_id,
                    tenant_id=record.tenant_id,
                    assistant_id=record.assistant_id,
                    status=record.status,
                    multitask_strategy=record.multitask_strategy,
                    metadata=record.metadata,
                    kwargs=record.kwargs,
                    error=record.error,
                    attempt=record.attempt,
                    created_at=record.created_at,
                    updated_at=record.updated_at,
                )
            )

    async def get_run(self, run_id: str, thread_id: str, tenant_id: str) -> RunRecord | None:
        """The tenant's run `run_id` of its thread `thread_id` (the thread's id, not its key:
        a tenant has one thread of each id, and the run names that thread's key)."""
        async with self._auto.connect() as conn:
            row = (
                await conn.execute(
                    select(runs).where(runs.c.run_id == run_id, runs.c.tenant_id == tenant_id)
                )
            ).first()
        found = _run(row) if row else None
        if found is None or public_thread_id(found.thread_id) != thread_id:
            return None
        return found

    async def get_run_any(self, run_id: str) -> RunRecord | None:
        """A run by id alone (for workers and the queue, which act for every tenant)."""
        async with self._auto.connect() as conn:
            row = (await conn.execute(select(runs).where(runs.c.run_id == run_id))).first()
        return _run(row) if row else None

    async def list_runs(
        self,
        key: str,
        tenant_id: str,
        *,
        status: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[RunRecord]:
        """The tenant's runs of the thread keyed `key`, newest first."""
        query = select(runs).where(runs.c.thread_id == key, runs.c.tenant_id == tenant_id)
        if status:
            query = query.where(runs.c.status == status)
        query = query.order_by(runs.c.created_at.desc()).limit(limit).offset(offset)
        async with self._auto.connect() as conn:
            return [_run(r) for r in (await conn.execute(query)).all()]

    async def active_runs(self, key: str) -> list[RunRecord]:
        """Pending and running runs of the thread keyed `key`, oldest first."""
        query = (
            select(runs)
            .where(runs.c.thread_id == key, runs.c.status.in_(ACTIVE_RUN_STATUSES))
            .order_by(runs.c.created_at)
        )
        async with self._auto.connect() as conn:
            return [_run(r) for r in (await conn.execute(query)).all()]

    async def delete_run(self, run_id: str) -> None:
        async with self._auto.begin() as conn:
            await conn.execute(delete(runs).where(runs.c.run_id == run_id))

    async def runs_to_recover(self) -> list[RunRecord]:
        """Pending and running runs of every thread, oldest first."""
        query = (
            select(runs).where(runs.c.status.in_(ACTIVE_RUN_STATUSES)).order_by(runs.c.created_at)
        )
        async with self._auto.connect() as conn:
            return [_run(r) for r in (await conn.execute(query)).all()]

    async def count_runs(self, statuses: Sequence[str]) -> int:
        async with self._auto.connect() as conn:
            found = await conn.execute(
                select(func.count()).select_from(runs).where(runs.c.status.in_(list(statuses)))
            )
        return int(found.scalar_one())

    async def set_run_status(
        self,
        run_id: str,
        status: str,
        *,
        error: str | None = None,
        attempt: int | None = None,
        thread: tuple[str, str] | None = None,
        only_from: Sequence[str] | None = None,
    ) -> bool:
        """Set a run's status; with `thread` (key, status), its thread's status too.

        `only_from`: change the run only while its status is one of these (a compare and
        set: a cancel and the run's own end cannot overwrite each other); the thread
        follows only if the run changed. False when the run did not change.
        On Postgres both go in one statement (the run's update as a CTE); elsewhere in
        one transaction.
        """
        at = now()
        values: dict[str, Any] = {"status": status, "updated_at": at, "error": error}
        if attempt is not None:
            values["attempt"] = attempt
        run_update = update(runs).where(runs.c.run_id == run_id).values(**values)
        if only_from is not None:
            run_update = run_update.where(runs.c.status.in_(list(only_from)))
        if thread is None:
            async with self._auto.connect() as conn:
                return bool((await conn.execute(run_update)).rowcount)
        thread_update = (
            update(threads)
            .where(threads.c.thread_key == thread[0])
            .values(status=thread[1], updated_at=at)
        )
        if self.engine.dialect.name == "postgresql" and only_from is None:
            async with self._auto.connect() as conn:
                await conn.execute(thread_update.add_cte(run_update.cte("run_update")))
            return True
        async with self.engine.begin() as conn:
            changed = bool((await conn.execute(run_update)).rowcount)
            if changed:
                await conn.execute(thread_update)
            return changed

    # tenants and keys ------------------------------------------------------------------

    async def create_key(self, tenant_id: str, role: str) -> ApiKey:
        """A new API key for a tenant (created on first use); the plain key is returned once."""
        secret = "keel_" + secrets.token_urlsafe(32)
        key = ApiKey(key_id=secrets.token_hex(8), tenant_id=tenant_id, role=role, created_at=now())
        async with self.engine.begin() as conn:
            known = await conn.execute(
                select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id)
            )
            if known.first() is None:
                await conn.execute(tenants.insert().values(tenant_id=tenant_id, created_at=now()))
            await conn.execute(
                api_keys.insert().values(
                    key_id=key.key_id,
                    tenant_id=tenant_id,
                    role=role,
                    key_hash=hash_key(secret),
                    created_at=key.created_at,
                )
            )
        return ApiKey(key.key_id, tenant_id, role, key.created_at, secret=secret)

    async def find_key(self, secret: str) -> ApiKey | None:
        """The live key with this secret, if any."""
        async with self._auto.connect() as conn:
            row = (
                await conn.execute(
                    select(api_keys).where(
                        api_keys.c.key_hash == hash_key(secret), api_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        m = row._mapping
        return ApiKey(m["key_id"], m["tenant_id"], m["role"], _aware(m["created_at"]))

    async def revoke_key(self, key_id: str) -> bool:
        async with self._auto.begin() as conn:
            done = await conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        return bool(done.rowcount)
