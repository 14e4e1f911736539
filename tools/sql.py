"""The `sql_query` tool: one read-only SELECT against the configured database.

Two independent layers keep the database safe:

1. `validate_select` parses the query with sqlglot and refuses anything but a single SELECT
   (CTEs and set operations allowed) over allow-listed tables. What runs is sqlglot's
   regenerated SQL without comments, so the statement that was checked is the one executed.
2. `execute_readonly` opens the connection read-only (SQLite `mode=ro`, a Postgres
   `READ ONLY` transaction) and enforces the statement timeout, so a query that slipped
   past validation still cannot write or run forever.

Refusals and database errors the model can fix are `ToolInputError`; an unreachable
database is `ToolFatalError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlglot
from pydantic import Field
from sqlglot import exp
from sqlglot.errors import SqlglotError

from keel.config import Settings
from keel.errors import ErrorCode, ToolFatalError, ToolInputError
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

Dialect = Literal["sqlite", "postgres"]

_FORBIDDEN: tuple[type[exp.Expr], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
    exp.TruncateTable, exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.Into, exp.Set,
    exp.Use, exp.Copy, exp.Grant, exp.Revoke, exp.Transaction, exp.Commit, exp.Rollback,
    exp.LoadData, exp.Analyze, exp.Cache, exp.Uncache, exp.Refresh, exp.Comment, exp.Lock,
)  # fmt: skip
_DEFAULT_SCHEMAS: dict[Dialect, frozenset[str]] = {
    "sqlite": frozenset({"main"}),
    "postgres": frozenset({"public"}),
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TABLE_FUNCTIONS = frozenset({"generate_series", "json_each", "json_tree", "unnest"})
"""Set-returning functions allowed in FROM (they read no table)."""


def _refuse(message: str) -> ToolInputError:
    return ToolInputError(message, code=ErrorCode.TOOL_REFUSED)


def validate_select(query: str, *, dialect: str, allowed_tables: Iterable[str]) -> str:
    """Return `query` normalized (comments dropped) if it is one SELECT over allowed tables.

    Raises `ToolInputError` saying what to change otherwise. Accepted queries are remembered
    (parsing and re-printing were most of the tool's own CPU; agents repeat queries).
    """
    return _validated(query, dialect, frozenset(t.lower() for t in allowed_tables))


@functools.lru_cache(maxsize=512)
def _validated(query: str, dialect: str, allowed: frozenset[str]) -> str:
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unsupported dialect {dialect!r}")
    dialect_: Dialect = "sqlite" if dialect == "sqlite" else "postgres"
    try:
        parsed = sqlglot.parse(query, read=dialect)
    except SqlglotError as exc:
        detail = _ANSI.sub("", str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        raise _refuse(f"could not parse the SQL ({dialect} dialect): {detail}") from exc
    statements = [s for s in parsed if s is not None and not _is_empty(s)]
    if not statements:
        raise _refuse("the query is empty: send one SELECT statement")
    if len(statements) > 1:
        raise _refuse(
            f"send exactly one statement; found {len(statements)} "
            "(remove the ';' and everything after it)"
        )
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation | exp.Subquery):
        raise _refuse(f"only SELECT queries are allowed; got {_kind(tree)}")
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise _refuse(f"only read-only SELECT queries are allowed; found {_kind(node)}")
    for table in tree.find_all(exp.Table):
        _check_table(table, allowed, dialect_)
    return tree.sql(dialect=dialect, comments=False)


def _is_empty(node: exp.Expr) -> bool:
    """A bare `;` carrying only a comment (e.g. `SELECT 1; -- done`)."""
    return isinstance(node, exp.Semicolon)


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Into):
        return "SELECT ... INTO (it creates a table)"
    if isinstance(node, exp.Lock):
        return "a locking read (FOR UPDATE/SHARE)"
    return node.key.upper()


def _check_table(table: exp.Table, allowed: frozenset[str], dialect: Dialect) -> None:
    if not isinstance(table.this, exp.Identifier):
        func = table.this
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if isinstance(func, exp.GenerateSeries):
            name = "generate_series"
        if name not in _TABLE_FUNCTIONS:
            raise _refuse(
                f"table function {name or func.sql(dialect=dialect)}() is not allowed in FROM; "
                f"query these tables instead: {', '.join(sorted(allowed))}"
            )
        return
    name = table.name.lower()
    qualifiers = [p.lower() for p in (table.catalog, table.db) if p]
    if not qualifiers and name in _visible_ctes(table, dialect):
        return
    full = ".".join([*qualifiers, name])
    in_default_schema = len(qualifiers) == 1 and qualifiers[0] in _DEFAULT_SCHEMAS[dialect]
    if full in allowed or ((not qualifiers or in_default_schema) and name in allowed):
        return
    raise _refuse(
        f"table '{full}' is not allowed; the tables you may query are: {', '.join(sorted(allowed))}"
    )


def _visible_ctes(node: exp.Expr, dialect: Dialect) -> set[str]:
    """CTE names that `node` can see, honouring each dialect's scoping.

    Inside CTE number i, Postgres sees only CTEs 0..i-1 unless the WITH is RECURSIVE; SQLite
    sees the whole list. Being strict here matters: a name wrongly taken for a CTE would let
    a query read a real table of that name past the allow-list.
    """
    names: set[str] = set()
    child, parent = node, node.parent
    while parent is not None:
        with_ = parent.args.get("with_") or parent.args.get("with")
        if isinstance(with_, exp.With) and child is not with_:
            names |= {cte.alias_or_name.lower() for cte in with_.expressions}
        elif isinstance(parent, exp.With) and isinstance(child, exp.CTE):
            ctes = list(parent.expressions)
            visible = ctes if parent.args.get("recursive") or dialect == "sqlite" else []
            if not visible:
                visible = ctes[: ctes.index(child)]
            names |= {cte.alias_or_name.lower() for cte in visible}
        child, parent = parent, parent.parent
    return names


@dataclass(frozen=True)
class SqlTarget:
    """Where queries go: a SQLite file or a Postgres URL."""

    dialect: Dialect
    location: str
    """A filesystem path (SQLite) or a `postgresql://` URL."""


@dataclass(frozen=True)
class QueryResult:
    """Rows as fetched, at most `row_cap` of them; `truncated` when more were available."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool

    def to_json(self) -> str:
        return json.dumps(
            {
                "columns": self.columns,
                "rows": [[_tidy(v) for v in row] for row in self.rows],
                "row_count": len(self.rows),
                "truncated": self.truncated,
            },
            default=_jsonable,
        )


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


def execute_readonly(target: SqlTarget, sql: str, *, row_cap: int, timeout_s: float) -> QueryResult:
    """Run `sql` on a read-only connection; fetch at most `row_cap` rows (+1 to see more)."""
    if target.dialect == "sqlite":
        return _run_sqlite(Path(target.location), sql, row_cap=row_cap, timeout_s=timeout_s)
    return _run_postgres(target.location, sql, row_cap=row_cap, timeout_s=timeout_s)


def _timed_out(timeout_s: float) -> ToolInputError:
    return ToolInputError(
        f"the query was cancelled after {timeout_s:g}s; make it cheaper "
        "(filter earlier, aggregate, add LIMIT)",
        code=ErrorCode.TOOL_TIMEOUT,
    )


def _rejected(exc: Exception) -> ToolInputError:
    return ToolInputError(f"the database rejected the query: {exc}".strip())


def _result(columns: list[str], fetched: list[Any], row_cap: int) -> QueryResult:
    rows = [list(r) for r in fetched[:row_cap]]
    return QueryResult(columns=columns, rows=rows, truncated=len(fetched) > row_cap)


@contextlib.contextmanager
def _sqlite_connection(path: Path) -> Iterator[sqlite3.Connection]:
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
        yield conn
    finally:
        conn.close()


def _run_sqlite(path: Path, sql: str, *, row_cap: int, timeout_s: float) -> QueryResult:
    with _sqlite_connection(path) as conn:
        deadline = time.monotonic() + timeout_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = conn.execute(sql)
            fetched = cursor.fetchmany(row_cap + 1)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                raise _timed_out(timeout_s) from exc
            raise _rejected(exc) from exc
        except (sqlite3.DatabaseError, sqlite3.ProgrammingError, sqlite3.Warning) as exc:
            raise _rejected(exc) from exc
        columns = [d[0] for d in cursor.description or ()]
    return _result(columns, fetched, row_cap)


def _run_postgres(url: str, sql: str, *, row_cap: int, timeout_s: float) -> QueryResult:
    import psycopg
    from psycopg import errors as pg_errors

    try:
        conn = psycopg.connect(url, connect_timeout=max(2, int(timeout_s) + 1))
    except psycopg.OperationalError as exc:
        raise ToolFatalError(f"cannot connect to the Postgres database: {exc}") from exc
    with conn:
        conn.read_only = True
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (str(max(1, int(timeout_s * 1000))),),
                )
                cur.execute(sql)  # validated above, never formatted with user data
                fetched = cur.fetchmany(row_cap + 1)
                columns = [d.name for d in cur.description or ()]
        except pg_errors.QueryCanceled as exc:
            raise _timed_out(timeout_s) from exc
        except psycopg.OperationalError as exc:
            raise ToolFatalError(f"lost the Postgres connection: {exc}") from exc
        except psycopg.Error as exc:
            raise _rejected(exc) from exc
        finally:
            conn.rollback()
    return _result(columns, fetched, row_cap)


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
        target, normalized, row_cap=settings.row_cap, timeout_s=_timeout_for(ctx)
    )
    return result.to_json()
