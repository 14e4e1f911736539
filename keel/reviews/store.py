"""The reviews table: the comments the code reviewer posts, each stored once.

One small table, `review_comments`, in the application database (`KEEL_REVIEW__URL`; SQLite
under `KEEL_HOME` by default, Postgres in production), created on first use. Each row
carries the idempotency key of the tool call that posted it in a unique column: posting
again with the same key inserts nothing and returns the first row, so a replayed or re-run
call never posts twice.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from keel.config import Settings
from keel.errors import ConfigError

__all__ = ["SEVERITIES", "comments", "list_comments", "open_reviews", "post_comment", "reviews_url"]

SEVERITIES = ("info", "warning", "error")

metadata = MetaData()
comments = Table(
    "review_comments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repo", Text, nullable=False),
    Column("base", String(64), nullable=False),
    Column("head", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("line", Integer, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("author", String(64), nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def reviews_url(settings: Settings) -> str:
    """`KEEL_REVIEW__URL` with `{home}` replaced by `KEEL_HOME`, as SQLAlchemy takes it."""
    url = settings.review.url.replace("{home}", settings.home.as_posix())
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return url
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    raise ConfigError(f"KEEL_REVIEW__URL: expected sqlite:///path or postgresql://…, got {url!r}")


def open_reviews(settings: Settings) -> Engine:
    """The engine on the reviews database, its table created (once per process and URL)."""
    url = reviews_url(settings)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            timeout = settings.review.timeout_s
            if url.startswith("sqlite"):
                engine = create_engine(
                    url, connect_args={"timeout": timeout, "check_same_thread": False}
                )
            else:
                engine = create_engine(
                    url,
                    pool_pre_ping=True,
                    pool_size=2,
                    max_overflow=3,
                    pool_timeout=timeout,
                    connect_args={"connect_timeout": max(1, int(timeout))},
                )
            metadata.create_all(engine, checkfirst=True)
            _engines[url] = engine
    return engine


def _row(found: Any) -> dict[str, Any]:
    row = dict(found._mapping)
    row["created_at"] = row["created_at"].isoformat() if row["created_at"] else None
    return row


def post_comment(
    engine: Engine,
    *,
    key: str,
    repo: str,
    base: str,
    head: str,
    path: str,
    line: int,
    severity: str,
    body: str,
    author: str,
) -> tuple[dict[str, Any], bool]:
    """Store a comment once per `key`: (the row, True when this call inserted it)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    values = {
        "repo": repo,
        "base": base,
        "head": head,
        "path": path,
        "line": line,
        "severity": severity,
        "body": body,
        "author": author,
        "idempotency_key": key,
        "created_at": datetime.now(UTC),
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(comments).values(**values))
        inserted = True
    except IntegrityError:
        inserted = False
    with engine.connect() as conn:
        found = conn.execute(select(comments).where(comments.c.idempotency_key == key)).one()
    return _row(found), inserted


def list_comments(
    engine: Engine, *, repo: str | None = None, head: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Stored comments, oldest first (optionally of one repository and head commit)."""
    query = select(comments).order_by(comments.c.id).limit(limit)
    if repo is not None:
        query = query.where(comments.c.repo == repo)
    if head is not None:
        query = query.where(comments.c.head == head)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]
