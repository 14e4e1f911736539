"""The help desk's database: where it is, its engine, its schema and its sample data.

`open_helpdesk(settings, shop_url)` is what the ticket tools call: an engine on
`KEEL_TICKETS__URL`, upgraded to the latest migration (own version table,
`helpdesk_alembic_version`) and, with `KEEL_TICKETS__SAMPLE_DATA` on, holding the sample data
of the shop database `shop_url` (re-made when the shop's sample is re-made, e.g. the next
day). That is done once per process and shop stamp; across processes a lock serialises it
(a lock file beside a SQLite database, an advisory lock on Postgres).

SQLite transactions that write start with `BEGIN IMMEDIATE` (`writing`), so a refund's check
and write cannot interleave with another's, while reads run beside them (WAL); Postgres
refunds take an advisory lock per order (`keel.tickets.store`).
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, select, text

from keel.config import Settings
from keel.errors import ConfigError
from keel.tickets.sample import seed_sample, shop_stamp
from keel.tickets.tables import meta, metadata

__all__ = [
    "engine_for",
    "helpdesk_url",
    "migrate",
    "open_helpdesk",
    "shop_engine",
    "writing",
]

_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x68656C70  # "help"
_engines: dict[tuple[str, bool], Engine] = {}
_ready: dict[str, str] = {}
_lock = threading.Lock()
_WRITE = "keel_helpdesk_write"


def helpdesk_url(settings: Settings) -> str:
    """`KEEL_TICKETS__URL` with `{home}` replaced by `KEEL_HOME`."""
    return settings.tickets.url.replace("{home}", settings.home.as_posix())


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return url
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    raise ConfigError(f"KEEL_TICKETS__URL: expected sqlite:///path or postgresql://…, got {url!r}")


def engine_for(url: str, *, timeout_s: float = 5.0, read_only: bool = False) -> Engine:
    """One engine per database (and mode) in the process."""
    key = (url, read_only)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create(url, timeout_s, read_only)
            _engines[key] = engine
    return engine


def _create(url: str, timeout_s: float, read_only: bool) -> Engine:
    target = _sqlalchemy_url(url)
    if not target.startswith("sqlite"):
        return create_engine(
            target,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            pool_timeout=timeout_s,
            connect_args={"connect_timeout": max(1, int(timeout_s))},
        )
    path = Path(target.removeprefix("sqlite:///"))
    if read_only:
        engine = create_engine(
            f"sqlite:///file:{path.resolve()}?mode=ro&uri=true",
            connect_args={"timeout": timeout_s, "check_same_thread": False},
        )
        return engine
    engine = create_engine(target, connect_args={"timeout": timeout_s, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def writing(engine: Engine) -> Engine:
    """`engine` for a transaction that writes: on SQLite it starts with `BEGIN IMMEDIATE`
    (the write lock taken before its reads, so a check and its write cannot interleave with
    another writer's); reads start a plain `BEGIN` and run beside writers (WAL)."""
    return engine.execution_options(**{_WRITE: True})


def migrate(conn: Connection) -> None:
    """Upgrade the help-desk schema to the latest revision on `conn` (in its transaction)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def shop_engine(shop_url: str, timeout_s: float = 5.0) -> Engine:
    """A read-only engine on the shop's database (orders, totals)."""
    return engine_for(shop_url, timeout_s=timeout_s, read_only=True)


def open_helpdesk(settings: Settings, shop_url: str) -> Engine:
    """The help desk's engine, its schema current and its sample data in place."""
    url = helpdesk_url(settings)
    engine = engine_for(url, timeout_s=settings.tickets.timeout_s)
    shop = shop_engine(shop_url, settings.tickets.timeout_s)
    with shop.connect() as shop_conn:
        stamp = shop_stamp(shop_conn)
    if _ready.get(url) == stamp:
        return engine
    with _process_lock(url), writing(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
        migrate(conn)
        if settings.tickets.sample_data:
            _sample(conn, shop, stamp)
    _ready[url] = stamp
    return engine


def _sample(conn: Connection, shop: Engine, stamp: str) -> None:
    """Seed an empty help desk; re-seed one whose sample came from other shop data."""
    have = conn.execute(select(meta.c.value).where(meta.c.key == "sample_of")).scalar()
    if have is not None and have.partition("/")[0] == stamp:
        return
    if have is None and conn.execute(text("SELECT 1 FROM helpdesk_tickets LIMIT 1")).first():
        return  # real data, not a sample: never touched
    for table in reversed(metadata.sorted_tables):
        conn.execute(table.delete())
    with shop.connect() as shop_conn:
        seed_sample(conn, shop_conn)


@contextmanager
def _process_lock(url: str) -> Iterator[None]:
    """Serialise schema and sample set-up across processes sharing a SQLite file."""
    if not url.startswith("sqlite:///"):
        yield
        return
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
