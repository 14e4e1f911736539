"""The `sql_query` tool: one read-only SELECT against the configured database.

Three independent layers keep the database (and this process) safe:

1. `validate_select` parses the query with sqlglot and refuses anything but a single SELECT
   (CTEs and set operations allowed) over allow-listed tables, calling allow-listed
   functions only (`_sql_functions`: no `query_to_xml`, `pg_read_file`, `dblink`, …), with
   names compared as the database compares them. What runs is sqlglot's regenerated SQL
   without comments, checked again, so the statement that was checked is the one executed.
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
import functools
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import sqlglot
from pydantic import Field
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from keel.config import Settings, SqlToolSettings
from keel.errors import ErrorCode, ToolFatalError, ToolInputError
from keel.tools._sql_functions import Dialect, check_function, fold, fold_identifier
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

_FORBIDDEN: tuple[type[exp.Expr], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
    exp.TruncateTable, exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.Into, exp.Set,
    exp.Use, exp.Copy, exp.Grant, exp.Revoke, exp.Transaction, exp.Commit, exp.Rollback,
    exp.LoadData, exp.Analyze, exp.Cache, exp.Uncache, exp.Refresh, exp.Comment, exp.Lock,
    exp.Operator,
)  # fmt: skip
_DEFAULT_SCHEMAS: dict[Dialect, frozenset[str]] = {
    "sqlite": frozenset({"main"}),
    "postgres": frozenset({"public"}),
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TABLE_FUNCTIONS = frozenset({"generate_series", "json_each", "json_tree", "unnest"})
"""Set-returning functions allowed in FROM (they read no table)."""
MAX_QUERY_CHARS = 20_000
"""Longer queries are refused before parsing (a data question is a few hundred characters)."""
MAX_NESTING = 32
"""Deepest parenthesis nesting accepted; sqlglot's recursive parser overflows near 50."""
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
    return _validated(query, dialect_, allowed)


@functools.lru_cache(maxsize=512)
def _validated(query: str, dialect: Dialect, allowed: frozenset[str]) -> str:
    if len(query) > MAX_QUERY_CHARS:
        raise _refuse(f"the query is {len(query)} characters, over {MAX_QUERY_CHARS}")
    try:
        _check_nesting(query, dialect)
        tree = _one_statement(query, dialect)
        _check_tree(tree, allowed, dialect)
        normalized = tree.sql(dialect=dialect, comments=False)
        # What runs is the regenerated text: it must pass the same checks.
        _check_tree(_one_statement(normalized, dialect), allowed, dialect)
    except ToolInputError:
        raise
    except RecursionError as exc:
        raise _too_deep() from exc
    except SqlglotError as exc:
        detail = _ANSI.sub("", str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        raise _refuse(f"could not parse the SQL ({dialect} dialect): {detail}") from exc
    except Exception as exc:  # sqlglot on hostile text: re.error, IndexError, ...
        raise _refuse(
            f"could not parse the SQL ({dialect} dialect): {type(exc).__name__}: {exc}; "
            "write plain SQL without unusual escapes"
        ) from exc
    return normalized


def _too_deep() -> ToolInputError:
    return _refuse(
        f"the query is nested too deeply (at most {MAX_NESTING} levels of parentheses); "
        "flatten it with a WITH clause"
    )


def _check_nesting(query: str, dialect: Dialect) -> None:
    depth = deepest = 0
    for token in sqlglot.tokenize(query, read=dialect):
        if token.token_type is TokenType.L_PAREN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type is TokenType.R_PAREN:
            depth -= 1
    if deepest > MAX_NESTING:
        raise _too_deep()


def _one_statement(query: str, dialect: Dialect) -> exp.Expr:
    statements = [
        s for s in sqlglot.parse(query, read=dialect) if s is not None and not _is_empty(s)
    ]
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
    return tree


def _check_tree(tree: exp.Expr, allowed: frozenset[str], dialect: Dialect) -> None:
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise _refuse(f"only read-only SELECT queries are allowed; found {_kind(node)}")
    for table in tree.find_all(exp.Table):
        _check_table(table, allowed, dialect)
    for func in tree.find_all(exp.Func):
        if problem := check_function(func, dialect):
            raise _refuse(problem)


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
    if isinstance(node, exp.Operator):
        return "OPERATOR(...) syntax (not allowed: write plain operators such as +)"
    return node.key.upper()


def _check_table(table: exp.Table, allowed: frozenset[str], dialect: Dialect) -> None:
    if table.this is None:
        if table.args.get("rows_from"):  # ROWS FROM (f(), g()): each f is a Table checked alone
            return
        raise _refuse(f"this FROM item is not allowed: {table.sql(dialect=dialect)}")
    if not isinstance(table.this, exp.Identifier):
        func = table.this
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if isinstance(func, exp.GenerateSeries | exp.ExplodingGenerateSeries):
            name = "generate_series"
        if name not in _TABLE_FUNCTIONS:
            raise _refuse(
                f"table function {name or func.sql(dialect=dialect)}() is not allowed in FROM; "
                f"query these tables instead: {', '.join(sorted(allowed))}"
            )
        return
    name = fold_identifier(table.this, dialect)
    qualifiers = [
        fold_identifier(part, dialect)
        for part in (table.args.get("catalog"), table.args.get("db"))
        if part is not None
    ]
    if not qualifiers and name in _visible_ctes(table, dialect):
        return
    full = ".".join([*qualifiers, name])
    in_default_schema = len(qualifiers) == 1 and qualifiers[0] in _DEFAULT_SCHEMAS[dialect]
    if full in allowed or ((not qualifiers or in_default_schema) and name in allowed):
        return
    shown = table.sql(dialect=dialect) if dialect == "postgres" else full
    raise _refuse(
        f"table '{shown}' is not allowed; the tables you may query are: "
        f"{', '.join(sorted(allowed))}"
    )


def _cte_name(cte: exp.CTE, dialect: Dialect) -> str:
    alias = cte.args.get("alias")
    return fold_identifier(alias.this if isinstance(alias, exp.TableAlias) else None, dialect)


def _visible_ctes(node: exp.Expr, dialect: Dialect) -> set[str]:
    """CTE names that `node` can see, honouring each dialect's scoping and name folding.

    Inside CTE number i, Postgres sees only CTEs 0..i-1 unless the WITH is RECURSIVE; SQLite
    sees the whole list. Being strict here matters: a name wrongly taken for a CTE would let
    a query read a real table of that name past the allow-list.
    """
    names: set[str] = set()
    child, parent = node, node.parent
    while parent is not None:
        with_ = parent.args.get("with_") or parent.args.get("with")
        if isinstance(with_, exp.With) and child is not with_:
            names |= {_cte_name(cte, dialect) for cte in with_.expressions}
        elif isinstance(parent, exp.With) and isinstance(child, exp.CTE):
            ctes = list(parent.expressions)
            visible = ctes if parent.args.get("recursive") or dialect == "sqlite" else []
            if not visible:
                visible = ctes[: ctes.index(child)]
            names |= {_cte_name(cte, dialect) for cte in visible}
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
