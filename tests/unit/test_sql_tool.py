"""The `sql_query` tool against the SQLite sample database: guard rails, read-only, limits."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from keel.config import Settings, SqlToolSettings
from keel.errors import ErrorCode, ToolFatalError, ToolInputError
from keel.tools import ToolContext, sql_query
from keel.tools.sample_db import build_sample_db
from keel.tools.sql import SqlTarget, execute_readonly, validate_select

TABLES = ("customers", "products", "orders", "order_items")
FOREVER = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sample_db(tmp_path_factory.mktemp("sqltool") / "sample.db")


@pytest.fixture
def settings(db_path: Path, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, database_url=f"sqlite:///{db_path}")


async def run(query: str, settings: Settings, *, deadline: float | None = None) -> dict[str, Any]:
    """Call the tool the way the runtime does: validate, then invoke with a context."""
    args = sql_query.validate({"query": query})
    ctx = ToolContext(settings=settings, tool_call_id="c1", deadline=deadline)
    result: dict[str, Any] = json.loads(await sql_query.invoke(args, ctx))
    return result


def direct(db_path: Path, query: str) -> list[list[Any]]:
    with sqlite3.connect(db_path) as conn:
        return [list(r) for r in conn.execute(query)]


def table_counts(db_path: Path) -> list[list[Any]]:
    return [direct(db_path, f"SELECT count(*) FROM {t}")[0] for t in TABLES]


async def test_select_returns_columns_and_rows_like_sqlite(
    settings: Settings, db_path: Path
) -> None:
    query = (
        "SELECT category, count(*) AS n, round(avg(unit_price), 2) AS avg_price "
        "FROM products GROUP BY category ORDER BY category"
    )
    result = await run(query, settings)
    assert result["columns"] == ["category", "n", "avg_price"]
    assert result["rows"] == direct(db_path, query)
    assert result["row_count"] == len(result["rows"]) > 1
    assert result["truncated"] is False


async def test_default_database_is_the_sample_db_in_home(tmp_path: Path) -> None:
    result = await run("SELECT count(*) FROM customers", Settings(home=tmp_path))
    assert (tmp_path / "sample.db").is_file()
    assert result["rows"] == direct(tmp_path / "sample.db", "SELECT count(*) FROM customers")


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO orders (customer_id, order_date, status) VALUES (1, '2024-01-01', 'x')",
        "UPDATE orders SET status = 'completed'",
        "DELETE FROM orders",
        "DROP TABLE orders",
        "CREATE TABLE stolen AS SELECT * FROM customers",
        "ATTACH DATABASE '/tmp/other.db' AS other",
        "PRAGMA table_info(orders)",
        "PRAGMA writable_schema = 1",
        "VACUUM",
        "SELECT * INTO backup FROM orders",
        "WITH gone AS (DELETE FROM orders RETURNING id) SELECT * FROM gone",
        "REPLACE INTO products VALUES (1, 'x', 'y', 1.0)",
    ],
)
async def test_writes_and_commands_are_refused(
    query: str, settings: Settings, db_path: Path
) -> None:
    before = table_counts(db_path)
    with pytest.raises(ToolInputError) as info:
        await run(query, settings)
    assert info.value.code is ErrorCode.TOOL_REFUSED
    assert "SELECT" in info.value.message or "parse" in info.value.message
    assert table_counts(db_path) == before


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; DROP TABLE orders",
        "SELECT 1; -- x\nDROP TABLE orders",
        "SELECT 1 /* */; DELETE FROM orders",
        "SELECT 1 /* ; */ ; DELETE FROM orders -- ;",
        "SELECT count(*) FROM orders;\nSELECT count(*) FROM customers",
    ],
)
async def test_more_than_one_statement_is_refused(
    query: str, settings: Settings, db_path: Path
) -> None:
    before = table_counts(db_path)
    with pytest.raises(ToolInputError, match="exactly one statement"):
        await run(query, settings)
    assert table_counts(db_path) == before


@pytest.mark.parametrize(
    ("query", "table"),
    [
        ("SELECT * FROM sqlite_master", "sqlite_master"),
        ("SELECT name FROM sqlite_schema", "sqlite_schema"),
        ("SELECT * FROM meta", "meta"),
        ("SELECT id FROM orders UNION SELECT value FROM meta", "meta"),
        ("SELECT * FROM orders WHERE id IN (SELECT rowid FROM meta)", "meta"),
        ("SELECT * FROM temp.orders", "temp.orders"),
        ("SELECT * FROM (WITH meta AS (SELECT 1) SELECT * FROM meta) AS x, meta", "meta"),
        ("SELECT * FROM pragma_table_info('orders')", "pragma_table_info"),
    ],
)
async def test_tables_outside_the_allow_list_are_refused(
    query: str, table: str, settings: Settings
) -> None:
    with pytest.raises(ToolInputError) as info:
        await run(query, settings)
    assert table in info.value.message
    assert "customers, order_items, orders, products" in info.value.message


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM ORDERS",
        "SELECT count(*) FROM main.orders",
        'SELECT count(*) FROM "Orders"',
        "WITH recent AS (SELECT * FROM orders WHERE order_date >= '2000-01-01') "
        "SELECT count(*) FROM recent",
        "SELECT count(*) FROM (SELECT id FROM orders UNION ALL SELECT id FROM customers) AS u",
        "SELECT count(*) FROM orders -- trailing comment",
        "SELECT count(*) FROM orders; -- done",
        "SELECT count(*) FROM json_each('[1, 2, 3]')",
    ],
)
async def test_allowed_shapes_run(query: str, settings: Settings) -> None:
    result = await run(query, settings)
    assert result["row_count"] == 1
    assert isinstance(result["rows"][0][0], int)


def test_validate_select_strips_comments_and_returns_one_statement() -> None:
    sql = validate_select(
        "SELECT id /* note */ FROM orders -- */ ; DROP TABLE orders",
        dialect="sqlite",
        allowed_tables=TABLES,
    )
    assert "DROP" not in sql.upper()
    assert "--" not in sql and "/*" not in sql
    assert sqlite3.complete_statement(sql + ";")


def test_cte_scoping_follows_the_dialect() -> None:
    """In Postgres a non-recursive CTE cannot see later ones: `meta` there is the real table."""
    query = "WITH a AS (SELECT * FROM meta), meta AS (SELECT 1 AS x) SELECT * FROM a"
    with pytest.raises(ToolInputError, match="'meta' is not allowed"):
        validate_select(query, dialect="postgres", allowed_tables=TABLES)
    with pytest.raises(ToolInputError, match="'meta' is not allowed"):
        validate_select(
            "WITH meta AS (SELECT * FROM meta) SELECT * FROM meta",
            dialect="postgres",
            allowed_tables=TABLES,
        )
    recursive = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"
    assert "FROM r" in validate_select(recursive, dialect="postgres", allowed_tables=TABLES)


@pytest.mark.parametrize(
    "query", ["", "   ", "-- nothing", "SELEC 1", "SELECT * FROM orders WHERE"]
)
def test_empty_or_unparsable_sql_is_refused_clearly(query: str) -> None:
    with pytest.raises(ToolInputError) as info:
        validate_select(query, dialect="sqlite", allowed_tables=TABLES)
    assert info.value.code is ErrorCode.TOOL_REFUSED
    assert "\x1b" not in info.value.message


@pytest.mark.parametrize(
    "write",
    [
        "DELETE FROM orders",
        "INSERT INTO customers (name, email, country, created_at) VALUES ('x', 'y', 'z', 'w')",
        "UPDATE products SET unit_price = 0",
        "CREATE TABLE t (a INTEGER)",
        "DROP TABLE order_items",
    ],
)
def test_executor_connection_is_read_only_even_without_validation(
    write: str, db_path: Path
) -> None:
    before = table_counts(db_path)
    with pytest.raises(ToolInputError, match="readonly"):
        execute_readonly(SqlTarget("sqlite", str(db_path)), write, row_cap=10, timeout_s=5)
    assert table_counts(db_path) == before


@pytest.mark.parametrize(("cap", "truncated"), [(5, True), (40, False), (1000, False)])
async def test_row_cap_truncates_and_says_so(
    cap: int, truncated: bool, db_path: Path, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path, database_url=f"sqlite:///{db_path}", sql=SqlToolSettings(row_cap=cap)
    )
    total = direct(db_path, "SELECT count(*) FROM products")[0][0]
    result = await run("SELECT id FROM products ORDER BY id", settings)
    assert result["truncated"] is truncated
    assert result["row_count"] == min(cap, total)
    assert result["rows"] == direct(db_path, "SELECT id FROM products ORDER BY id")[:cap]


async def test_runaway_query_is_cancelled_within_the_timeout(db_path: Path, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        database_url=f"sqlite:///{db_path}",
        sql=SqlToolSettings(statement_timeout_s=0.5),
    )
    started = time.monotonic()
    with pytest.raises(ToolInputError) as info:
        await run(FOREVER, settings)
    elapsed = time.monotonic() - started
    assert info.value.code is ErrorCode.TOOL_TIMEOUT
    assert 0.4 <= elapsed < 3.0


async def test_call_deadline_shortens_the_statement_timeout(settings: Settings) -> None:
    assert settings.sql.statement_timeout_s >= 5
    started = time.monotonic()
    with pytest.raises(ToolInputError) as info:
        await run(FOREVER, settings, deadline=time.time() + 0.3)
    assert info.value.code is ErrorCode.TOOL_TIMEOUT
    assert time.monotonic() - started < 2.5


async def test_database_errors_are_fixable_input_errors(settings: Settings) -> None:
    with pytest.raises(ToolInputError, match="no_such_column"):
        await run("SELECT no_such_column FROM orders", settings)


@pytest.mark.parametrize(
    "url", ["sqlite:///{tmp}/missing.db", "sqlite:///{tmp}/not-a-db.db", "mysql://x/y"]
)
async def test_unusable_database_is_fatal(url: str, tmp_path: Path) -> None:
    (tmp_path / "not-a-db.db").write_text("this is not sqlite " * 100)
    settings = Settings(home=tmp_path, database_url=url.format(tmp=tmp_path))
    with pytest.raises(ToolFatalError):
        await run("SELECT count(*) FROM orders", settings)
    assert not (tmp_path / "missing.db").exists()


# Issue 18 item 5 on SQLite: names compare case-insensitively, quoted or not; functions are
# checked against an allow-list.
@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM orders WHERE length(randomblob(10)) > 0",
        "SELECT zeroblob(10) FROM orders",
        "SELECT load_extension('x')",
        "SELECT sqlite_version()",
        "SELECT main.upper('x')",
    ],
)
def test_sqlite_functions_outside_the_allow_list_are_refused(query: str) -> None:
    with pytest.raises(ToolInputError, match="not allowed") as info:
        validate_select(query, dialect="sqlite", allowed_tables=TABLES)
    assert info.value.code is ErrorCode.TOOL_REFUSED


def test_sqlite_cte_names_fold_like_table_names(settings: Settings) -> None:
    """In SQLite `"META"` and `meta` are one name, so this CTE really hides the table."""
    sql = validate_select(
        'WITH "META" AS (SELECT 1 AS x) SELECT x FROM meta', dialect="sqlite", allowed_tables=TABLES
    )
    assert "META" in sql


# Issue 18 item 6: resource bombs. The query checks refuse them; the executor bounds them
# even when the checks are bypassed.
def test_printf_with_a_huge_width_is_refused_before_it_runs(settings: Settings) -> None:
    """`printf('%.*c', 2e9, 'x')` is one C call of ~25 s that no progress handler interrupts."""
    for query in (
        "SELECT printf('%.*c', 2000000000, 'x')",
        "SELECT printf('%.2000000000c', 'x')",
        "SELECT format('%2000000000d', 1)",
        "SELECT printf(name, 2000000000) FROM products",
    ):
        started = time.monotonic()
        with pytest.raises(ToolInputError, match=r"printf|format") as info:
            validate_select(query, dialect="sqlite", allowed_tables=TABLES)
        assert info.value.code is ErrorCode.TOOL_REFUSED
        assert time.monotonic() - started < 1
    assert validate_select("SELECT printf('%.2f', 1.5)", dialect="sqlite", allowed_tables=TABLES)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT length(randomblob(300000000))",
        "SELECT zeroblob(300000000)",
        "SELECT replace(hex(zeroblob(200000)), '0', 'xx')",
    ],
)
def test_huge_values_are_refused_by_sqlite_limits(query: str, db_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ToolInputError, match="over 256000 bytes"):
        execute_readonly(SqlTarget("sqlite", str(db_path)), query, row_cap=10, timeout_s=5)
    assert time.monotonic() - started < 1


def test_fetching_stops_at_the_byte_cap_and_says_so(db_path: Path) -> None:
    """Sixty 100 kB rows against a 1 MB cap: about ten come back, with a note saying why."""
    query = (
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 60) "
        "SELECT n, hex(zeroblob(50000)) FROM g"
    )
    result = execute_readonly(
        SqlTarget("sqlite", str(db_path)), query, row_cap=200, timeout_s=5, max_bytes=1_000_000
    )
    assert result.truncated is True
    assert [r[0] for r in result.rows] == list(range(1, 10))
    assert "1000000-byte cap" in json.loads(result.to_json())["note"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT " + "(" * 5000 + "1" + ")" * 5000, "nested too deeply"),
        ("SELECT " + "(" * 45 + "1" + ")" * 45, "nested too deeply"),
        ("SELECT " + "abs(" * 60 + "1" + ")" * 60, "nested too deeply"),
        ("SELECT " + "CASE WHEN 1 THEN " * 80 + "1" + " END" * 80, "nested too deeply"),
        ("SELECT 1 FROM orders WHERE " + "NOT " * 500 + "1", "nested too deeply"),
        ("SELECT U&'d\\0061t' UESCAPE '\\' FROM orders", "could not parse"),
        ("SELECT 1" + " + 1" * 6000, "characters"),
    ],
)
def test_deep_nesting_and_odd_escapes_are_refused_clearly(
    query: str, reason: str, dialect: str
) -> None:
    """Before: RecursionError (from sqlglot's recursive parser) or re.error, not a refusal."""
    with pytest.raises(ToolInputError) as info:
        validate_select(query, dialect=dialect, allowed_tables=TABLES)
    assert info.value.code is ErrorCode.TOOL_REFUSED
    assert reason in info.value.message


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT * FROM ROWS FROM (query_to_xml('select 1', true, true, ''))", "query_to_xml"),
        ("SELECT CAST('secrets' AS regclass)", "REGCLASS"),
        ("SELECT 'pg_read_file'::regproc::oid", "casting"),
    ],
)
def test_postgres_catalog_lookups_and_other_from_forms_are_refused(query: str, reason: str) -> None:
    with pytest.raises(ToolInputError, match=reason) as info:
        validate_select(query, dialect="postgres", allowed_tables=TABLES)
    assert info.value.code is ErrorCode.TOOL_REFUSED


def test_ordinary_casts_and_rows_from_still_pass() -> None:
    for query in (
        "SELECT id::text, CAST(id AS numeric(10, 2)), order_date::date, '{}'::jsonb FROM orders",
        "SELECT * FROM ROWS FROM (generate_series(1, 3)) AS g",
    ):
        assert validate_select(query, dialect="postgres", allowed_tables=TABLES)
