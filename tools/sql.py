"""The `sql_query` tool: one read-only SELECT against the configured database.

Three independent layers keep the database (and this process) safe:

1. `validate_select` parses the query with sqlglot (`_sql_check`, imported with sqlglot by
   the first query) and refuses anything but a single SELECT (CTEs and set operations
   allowed) over allow-listed tables, calling allow-listed functions only
   (`_sql_functions`: no `query_to_xml`, `pg_read_file`, `dblink`, …), with names compared
   as the database compares them. What runs is sqlglot's regenerated SQL without comments,
   checked again, so the statement that was checked is the one executed.
   Deep nesting and text sqlglot cannot read are refused, never a `RecursionError`.
2. `execute_readonly` opens the connection read-only (SQLite `mode=ro`, a Postgres
   `READ ONLY` transaction), enforces the statement timeout, and bounds the result in rows
   and bytes (SQLite's value-size limits; a Postgres server-side cursor whose rows the server
   size-checks), so a query that slipped past validation still cannot write, run forever or
   fill this process's memory.
3. In production the Postgres connection is a least-privilege role that may read the
   allow-listed tables only (`sql_role`); a superuser connection is refused unless
   `SqlToolSettings.allow_superuser`.

Refusals and database errors the model can fix are `ToolInputError`; an unreachable or
misconfigured database is `ToolFatalError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from keel.config import Settings, SqlToolSettings
from keel.errors import ErrorCode, ToolFatalError, ToolInputError
from keel.tools._sql_names import Dialect, fold
from keel.tools.registry import ToolContext, tool
from keel.tools.sample_db import ensure_sample_db

__all__ = [
    "QueryResult",
    "SqlTarget",
    "execute_readonly",
    "resolve_target",
    "sql_query",
    "validate_select",
]

MAX_QUERY_CHARS = 20_000
"""Longer queries are refused before parsing (a data question is a few hundred characters)."""
DEFAULT_MAX_BYTES = SqlToolSettings.model_fields["max_result_bytes"].default
_BATCH_ROWS = 50
"""Rows fetched per round trip: the byte cap is checked between batches of this size."""
_MIN_VALUE_BYTES = 64_000
"""SQLite's SQLITE_LIMIT_LENGTH (largest string or blob, intermediate ones too) is the byte
cap but never below this, so `group_concat` over a few hundred rows still works."""
_SQLITE_LIMITS = {
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 4 * MAX_QUERY_CHARS,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1000,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 64,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
}
"""Per-connection SQLite limits: one C call (a 2 GB printf, a deep expression) cannot be
interrupted by the progress handler, so its size is bounded before it starts."""


def _refuse(message: str) -> ToolInputError:
    return ToolInputError(message, code=ErrorCode.TOOL_REFUSED)


def validate_select(query: str, *, dialect: str, allowed_tables: Iterable[str]) -> str:
    """Return `query` normalized (comments dropped) if it is one SELECT over allowed tables.

    Raises `ToolInputError` saying what to change otherwise. Table names are compared as the
    database compares them (`allowed_tables` are the names it stores). Accepted queries are
    remembered (parsing and re-printing were most of the tool's own CPU; agents repeat them).
    """
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unsupported dialect {dialect!r}")
    dialect_: Dialect = "sqlite" if dialect == "sqlite" else "postgres"
    allowed = frozenset(fold(t, quoted=True, dialect=dialect_) for t in allowed_tables)
    from keel.tools._sql_check import validated  # sqlglot: loaded by the first query only

    return validated(query, dialect_, allowed)


@dataclass(frozen=True)
class SqlTarget:
    """Where queries go: a SQLite file or a Postgres URL."""

    dialect: Dialect
    location: str
    """A filesystem path (SQLite) or a `postgresql://` URL."""


@dataclass(frozen=True)
class QueryResult:
    """Rows as fetched, at most `row_cap` of them and about `max_bytes` of values.

    `truncated` when more rows were available; `note` says why fetching stopped early.
    """

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    note: str = ""

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "columns": self.columns,
            "rows": [[_tidy(v) for v in row] for row in self.rows],
            "row_count": len(self.rows),
            "truncated": self.truncated,
        }
        if self.note:
            body["note"] = self.note
        return json.dumps(body, default=_jsonable)


def _tidy(value: Any) -> Any:
    """Floats at 12 significant digits: SUM's binary noise (…60000000002) misleads models."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    return str(value)


def resolve_target(settings: Settings) -> SqlTarget:
    """The configured database, or the bundled sample database when none is set."""
    url = settings.database_url
    if url is None:
        return SqlTarget("sqlite", str(ensure_sample_db(settings.home)))
    if url.startswith("sqlite:///"):
        return SqlTarget("sqlite", url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return SqlTarget("postgres", url.replace("postgresql+psycopg://", "postgresql://", 1))
    raise ToolFatalError("the SQL tool's database_url must be sqlite:///path or postgresql://…")


def execute_readonly(
    target: SqlTarget,
    sql: str,
    *,
    row_cap: int,
    timeout_s: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_superuser: bool = False,
) -> QueryResult:
    """Run `sql` on a read-only connection, within `timeout_s`, `row_cap` rows, `max_bytes`.

    A Postgres connection whose role is a superuser is refused unless `allow_superuser`.
    """
    limits = _Limits(row_cap, timeout_s, max_bytes)
    if target.dialect == "sqlite":
        return _run_sqlite(Path(target.location), sql, limits)
    return _run_postgres(target.location, sql, limits, allow_superuser=allow_superuser)


@dataclass(frozen=True)
class _Limits:
    row_cap: int
    timeout_s: float
    max_bytes: int


def _timed_out(timeout_s: float) -> ToolInputError:
    return ToolInputError(
        f"the query was cancelled after {timeout_s:g}s; make it cheaper "
        "(filter earlier, aggregate, add LIMIT)",
        code=ErrorCode.TOOL_TIMEOUT,
    )


def _rejected(exc: Exception) -> ToolInputError:
    return ToolInputError(f"the database rejected the query: {exc}".strip())


def _too_big(max_bytes: int) -> ToolInputError:
    return ToolInputError(
        f"a value or row of the result is over {max_bytes} bytes; select fewer or shorter "
        "columns (e.g. substr(col, 1, 200)) or aggregate",
        code=ErrorCode.TOOL_REFUSED,
    )


def _value_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes | bytearray | memoryview):
        return len(bytes(value))
    return 8


def _collect(fetch: Callable[[int], list[Any]], limits: _Limits) -> tuple[list[list[Any]], str]:
    """Fetch in batches until `row_cap` + 1 rows or `max_bytes`; say which limit cut it."""
    rows: list[list[Any]] = []
    size = 0
    while len(rows) <= limits.row_cap:
        batch = fetch(min(_BATCH_ROWS, limits.row_cap + 1 - len(rows)))
        if not batch:
            return rows, ""
        for row in batch:
            size += sum(_value_bytes(v) for v in row)
            if size > limits.max_bytes:
                return rows, (
                    f"stopped after {len(rows)} rows: the result passed the "
                    f"{limits.max_bytes}-byte cap; select fewer columns or rows, or aggregate"
                )
            rows.append(list(row))
    return rows, ""


def _result(columns: list[str], fetched: tuple[list[list[Any]], str], row_cap: int) -> QueryResult:
    rows, note = fetched
    return QueryResult(
        columns=columns,
        rows=rows[:row_cap],
        truncated=bool(note) or len(rows) > row_cap,
        note=note,
    )


@contextlib.contextmanager
def _sqlite_connection(path: Path, max_bytes: int) -> Iterator[sqlite3.Connection]:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise ToolFatalError(f"cannot open the SQLite database {path}: {exc}") from exc
    try:
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise ToolFatalError(f"{path} is not a usable SQLite database: {exc}") from exc
        for category, limit in _SQLITE_LIMITS.items():
            conn.setlimit(category, limit)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(max_bytes, _MIN_VALUE_BYTES))
        yield conn
    finally:
        conn.close()


def _run_sqlite(path: Path, sql: str, limits: _Limits) -> QueryResult:
    with _sqlite_connection(path, limits.max_bytes) as conn:
        deadline = time.monotonic() + limits.timeout_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = conn.execute(sql)
            fetched = _collect(cursor.fetchmany, limits)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                raise _timed_out(limits.timeout_s) from exc
            raise _rejected(exc) from exc
        except sqlite3.DataError as exc:  # SQLITE_TOOBIG: a value over SQLITE_LIMIT_LENGTH
            raise _too_big(limits.max_bytes) from exc
        except (sqlite3.DatabaseError, sqlite3.ProgrammingError, sqlite3.Warning) as exc:
            raise _rejected(exc) from exc
        columns = [d[0] for d in cursor.description or ()]
    return _result(columns, fetched, limits.row_cap)


_QUERY_START = re.compile(r"\s*(\(|SELECT\b|WITH\b|VALUES\b|TABLE\b)", re.IGNORECASE)
_ROW_OVER = "keel_row_over_bytes_"


def _guard_rows(sql: str, max_bytes: int) -> str:
    """Wrap a query so Postgres itself refuses a row over `max_bytes`.

    libpq receives a whole row before Python sees it, so one `repeat('x', 10^9)` would be a
    gigabyte in this process; the server checks each row's size first and fails the query
    with a marker error instead.
    """
    body = sql.rstrip().rstrip(";")
    return (  # the newline ends a trailing `--` comment of an unvalidated caller
        f"SELECT q.* FROM ({body}\n) AS q WHERE CASE WHEN octet_length(q::text) > {max_bytes} "
        f"THEN ('{_ROW_OVER}' || octet_length(q::text))::int END IS NULL"
    )


def _set_timeout(conn: Any, deadline: float, timeout_s: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timed_out(timeout_s)
    conn.execute(
        "SELECT set_config('statement_timeout', %s, true)", (str(max(1, int(remaining * 1000))),)
    )


def _refuse_superuser(conn: Any) -> None:
    if conn.info.parameter_status("is_superuser") == "on":
        conn.close()
        raise ToolFatalError(
            "the SQL tool's database connection is a superuser, which can read files and act "
            "on the server whatever the query checks say; connect as a least-privilege role "
            "(keel.tools.sql_role.create_readonly_role, or `keel sql-role`) or set "
            "KEEL_SQL__ALLOW_SUPERUSER=true to accept the risk"
        )


def _run_postgres(url: str, sql: str, limits: _Limits, *, allow_superuser: bool) -> QueryResult:
    import psycopg
    from psycopg import errors as pg_errors

    deadline = time.monotonic() + limits.timeout_s
    try:
        conn = psycopg.connect(url, connect_timeout=max(2, int(limits.timeout_s) + 1))
    except psycopg.OperationalError as exc:
        raise ToolFatalError(f"cannot connect to the Postgres database: {exc}") from exc
    if not allow_superuser:
        _refuse_superuser(conn)
    with conn:
        conn.read_only = True
        try:
            _set_timeout(conn, deadline, limits.timeout_s)
            if _QUERY_START.match(sql):
                with conn.cursor(name="keel_sql_query") as cur:
                    cur.execute(_guard_rows(sql, limits.max_bytes))

                    def fetch(n: int) -> list[Any]:
                        _set_timeout(conn, deadline, limits.timeout_s)
                        return cur.fetchmany(n)

                    fetched = _collect(fetch, limits)
                    columns = [d.name for d in cur.description or ()]
            else:  # not a query: only the read-only transaction's refusal is expected
                with conn.cursor() as plain:
                    plain.execute(sql)
                    fetched = _collect(plain.fetchmany, limits)
                    columns = [d.name for d in plain.description or ()]
        except pg_errors.QueryCanceled as exc:
            raise _timed_out(limits.timeout_s) from exc
        except pg_errors.InvalidTextRepresentation as exc:
            if _ROW_OVER in str(exc):
                raise _too_big(limits.max_bytes) from exc
            raise _rejected(exc) from exc
        except pg_errors.ProgramLimitExceeded as exc:
            raise _too_big(limits.max_bytes) from exc
        except psycopg.OperationalError as exc:
            raise ToolFatalError(f"lost the Postgres connection: {exc}") from exc
        except psycopg.Error as exc:
            raise _rejected(exc) from exc
        finally:
            if not conn.closed:
                conn.rollback()
    return _result(columns, fetched, limits.row_cap)


def _timeout_for(ctx: ToolContext) -> float:
    """The statement timeout, shortened to fit the call's deadline if there is one."""
    timeout = ctx.settings.sql.statement_timeout_s
    if ctx.deadline is not None:
        timeout = min(timeout, max(0.1, ctx.deadline - time.time()))
    return timeout


@tool(idempotent=True)
def sql_query(
    query: Annotated[
        str,
        Field(description="One SELECT statement (WITH ... SELECT and UNION allowed)."),
    ],
    ctx: ToolContext,
) -> str:
    """Run one read-only SQL SELECT on the sales database and return the rows as JSON.

    The result is {"columns", "rows", "row_count", "truncated"}; only allow-listed tables
    may be read and long-running queries are cancelled.
    """
    target = resolve_target(ctx.settings)
    settings = ctx.settings.sql
    normalized = validate_select(
        query, dialect=target.dialect, allowed_tables=settings.allowed_tables
    )
    result = execute_readonly(
        target,
        normalized,
        row_cap=settings.row_cap,
        timeout_s=_timeout_for(ctx),
        max_bytes=settings.max_result_bytes,
        allow_superuser=settings.allow_superuser,
    )
    return result.to_json()
