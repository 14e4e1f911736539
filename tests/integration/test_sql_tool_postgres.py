"""The `sql_query` tool against a real PostgreSQL: guard rails, a READ ONLY transaction and
the least-privilege role production runs it as."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from keel.config import Settings, SqlToolSettings
from keel.errors import ErrorCode, ToolFatalError, ToolInputError
from keel.tools import ToolContext, sql_query
from keel.tools.sql import SqlTarget, execute_readonly
from keel.tools.sql_role import create_readonly_role
from tests.cli_runner import keel_runner

pytestmark = pytest.mark.postgres

SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = f"keel_sqltool_test_{os.getpid()}"
URL = f"{SERVER}/{DB_NAME}"
READER = f"keel_reader_{os.getpid()}"
READER_URL = f"postgresql://{READER}:reader-pw@127.0.0.1:5432/{DB_NAME}"
TABLES = ("customers", "products", "orders", "order_items")

SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, country text,
                        created_at date);
CREATE TABLE products (id int PRIMARY KEY, name text, category text, unit_price numeric(10, 2));
CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers(id),
                     order_date date, status text);
CREATE TABLE order_items (id int PRIMARY KEY, order_id int REFERENCES orders(id),
                          product_id int REFERENCES products(id), quantity int,
                          unit_price numeric(10, 2));
CREATE TABLE secrets (id int PRIMARY KEY, value text);
INSERT INTO customers SELECT i, 'Customer ' || i, 'c' || i || '@example.com', 'DE',
    DATE '2024-01-01' FROM generate_series(1, 20) AS i;
INSERT INTO products SELECT i, 'Product ' || i, CASE WHEN i % 2 = 0 THEN 'A' ELSE 'B' END,
    i * 10.25 FROM generate_series(1, 8) AS i;
INSERT INTO orders SELECT i, 1 + i % 20, DATE '2024-01-01' + i,
    CASE WHEN i % 7 = 0 THEN 'cancelled' ELSE 'completed' END FROM generate_series(1, 60) AS i;
INSERT INTO order_items SELECT i, 1 + i % 60, 1 + i % 8, 1 + i % 3, (1 + i % 8) * 10.25
    FROM generate_series(1, 150) AS i;
INSERT INTO secrets VALUES (1, 'do not read');
CREATE TABLE "Products" (id int, name text);
INSERT INTO "Products" VALUES (1, 'do not read');
"""  # fmt: skip


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=3)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    try:
        admin = _admin()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {SERVER}: {exc}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    with psycopg.connect(URL) as conn:
        conn.execute(SCHEMA)
    create_readonly_role(URL, READER, "reader-pw", TABLES)
    yield URL
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{READER}"')


def direct(query: str) -> list[Any]:
    with psycopg.connect(URL) as conn:
        return conn.execute(query).fetchall()


def counts() -> list[Any]:
    return [
        direct(f"SELECT count(*) FROM {t}")[0][0]
        for t in ("customers", "products", "orders", "order_items", "secrets")
    ]


def make_settings(database: str, tmp_path: Any, *, url: str = READER_URL, **sql: Any) -> Settings:
    """Settings for the tool on the test database, as the least-privilege role by default."""
    return Settings(home=tmp_path, database_url=url, sql=SqlToolSettings(**sql))


def as_superuser(database: str, tmp_path: Any, **sql: Any) -> Settings:
    """The worst case: the query checks alone stand between the model and the server."""
    return make_settings(database, tmp_path, url=database, allow_superuser=True, **sql)


async def run(query: str, settings: Settings) -> dict[str, Any]:
    args = sql_query.validate({"query": query})
    result: dict[str, Any] = json.loads(
        await sql_query.invoke(args, ToolContext(settings=settings, tool_call_id="c1"))
    )
    return result


async def test_select_works_and_numbers_are_json_numbers(database: str, tmp_path: Any) -> None:
    query = (
        "SELECT p.category, sum(oi.quantity * oi.unit_price) AS revenue, "
        "min(o.order_date) AS first FROM order_items AS oi JOIN orders AS o ON o.id = oi.order_id "
        "JOIN products AS p ON p.id = oi.product_id WHERE o.status = 'completed' "
        "GROUP BY p.category ORDER BY p.category"
    )
    result = await run(query, make_settings(database, tmp_path))
    expected = direct(query)
    assert result["columns"] == ["category", "revenue", "first"]
    assert [r[0] for r in result["rows"]] == [r[0] for r in expected]
    assert [r[1] for r in result["rows"]] == [float(r[1]) for r in expected]
    assert [r[2] for r in result["rows"]] == [r[2].isoformat() for r in expected]
    assert result["truncated"] is False


async def test_row_cap(database: str, tmp_path: Any) -> None:
    result = await run(
        "SELECT id FROM orders ORDER BY id", make_settings(database, tmp_path, row_cap=7)
    )
    assert result["rows"] == [[i] for i in range(1, 8)]
    assert result["truncated"] is True


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO secrets VALUES (2, 'x')",
        "UPDATE orders SET status = 'completed'",
        "DELETE FROM orders",
        "DROP TABLE orders",
        "CREATE TABLE t (a int)",
        "TRUNCATE orders",
        "SELECT 1; DELETE FROM orders",
        "SELECT 1; -- x\nDROP TABLE orders",
        "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone",
        "SELECT * INTO copy_of_orders FROM orders",
        "SET default_transaction_read_only = off",
        "COMMIT",
        "SELECT * FROM secrets",
        "SELECT * FROM public.secrets",
        "SELECT * FROM pg_catalog.pg_user",
        "WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1) SELECT * FROM a",
    ],
)
async def test_refused_by_validation(query: str, database: str, tmp_path: Any) -> None:
    before = counts()
    with pytest.raises(ToolInputError) as info:
        await run(query, make_settings(database, tmp_path))
    assert info.value.code is ErrorCode.TOOL_REFUSED
    assert counts() == before


@pytest.mark.parametrize(
    "write",
    [
        "DELETE FROM orders",
        "INSERT INTO secrets VALUES (3, 'x')",
        "CREATE TABLE t (a int)",
        "WITH gone AS (DELETE FROM order_items RETURNING id) SELECT count(*) FROM gone",
    ],
)
def test_executor_transaction_is_read_only(write: str, database: str) -> None:
    """Even as a superuser and without validation, nothing is written.

    (A query-shaped write is wrapped by the row-size guard, where Postgres refuses a
    data-modifying WITH before the read-only check would.)
    """
    before = counts()
    with pytest.raises(ToolInputError, match=r"read-only transaction|data-modifying"):
        execute_readonly(
            SqlTarget("postgres", database), write, row_cap=10, timeout_s=5, allow_superuser=True
        )
    assert counts() == before


async def test_statement_timeout_cancels_a_long_query(database: str, tmp_path: Any) -> None:
    settings = make_settings(database, tmp_path, statement_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ToolInputError) as info:
        await run("SELECT count(*) FROM generate_series(1, 10000000000) AS g", settings)
    assert info.value.code is ErrorCode.TOOL_TIMEOUT
    assert time.monotonic() - started < 5


async def test_unreachable_server_is_fatal(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(ToolFatalError):
        await run("SELECT 1", settings)


# Issue 18 item 5: bypasses of the table allow-list found by an outside audit. Each ran (or
# reached the server) before functions were checked against an allow-list.
BYPASSES = [
    "SELECT query_to_xml('select value from secrets', true, true, '')",
    "SELECT table_to_xml('secrets', true, true, '')",
    "SELECT database_to_xml(true, true, '')",
    "SELECT xpath('//value/text()', query_to_xml('select * from secrets', true, false, ''))",
    "SELECT o.id, x FROM orders AS o, LATERAL query_to_xml('select * from secrets', true, true, "
    "'') AS x LIMIT 1",
    "SELECT pg_catalog.query_to_xml('select value from secrets', true, true, '')",
    "SELECT \"query_to_xml\"('select value from secrets', true, true, '')",
    "SELECT ts_stat('select to_tsvector(value) from secrets')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_terminate_backend(0)",
    "SELECT pg_stat_reset()",
    "SELECT pg_drop_replication_slot('keel_none')",
    "SELECT dblink_exec('dbname=postgres', 'create table pwned (a int)')",
    "SELECT set_config('statement_timeout', '0', false)",
    "SELECT current_setting('data_directory')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT 1 OPERATOR(pg_catalog.+) 2",
]


@pytest.mark.parametrize("query", BYPASSES)
async def test_functions_outside_the_allow_list_are_refused(
    query: str, database: str, tmp_path: Any
) -> None:
    with pytest.raises(ToolInputError) as info:
        await run(query, as_superuser(database, tmp_path))
    assert info.value.code is ErrorCode.TOOL_REFUSED
    assert "not allowed" in info.value.message
    assert "do not read" not in info.value.message


@pytest.mark.parametrize(
    "query",
    [
        'SELECT * FROM "Products"',
        'SELECT name FROM public."Products"',
        'WITH "Secrets" AS (SELECT 1 AS value) SELECT value FROM secrets',
    ],
)
async def test_names_are_compared_as_postgres_does(
    query: str, database: str, tmp_path: Any
) -> None:
    """A quoted name is exact: `"Products"` is another table than `products`."""
    with pytest.raises(ToolInputError) as info:
        await run(query, as_superuser(database, tmp_path))
    assert info.value.code is ErrorCode.TOOL_REFUSED
    assert "do not read" not in info.value.message


async def test_unquoted_names_fold_to_lower_case(database: str, tmp_path: Any) -> None:
    result = await run("SELECT count(*) FROM Products", make_settings(database, tmp_path))
    assert result["rows"] == [[8]]


async def test_a_data_question_keeps_its_functions(database: str, tmp_path: Any) -> None:
    query = """
        SELECT to_char(date_trunc('month', o.order_date), 'YYYY-MM') AS month,
               extract(year FROM o.order_date)::int AS year, count(DISTINCT o.customer_id),
               round(sum(oi.quantity * oi.unit_price)::numeric, 2) AS revenue,
               coalesce(max(p.name), '-'), string_agg(DISTINCT p.category, ',' ORDER BY
               p.category), percentile_cont(0.5) WITHIN GROUP (ORDER BY oi.quantity),
               rank() OVER (ORDER BY sum(oi.quantity) DESC), lower(min(c.country)),
               count(*) FILTER (WHERE o.status = 'completed'), greatest(1, 2),
               CASE WHEN count(*) > 1 THEN 'many' ELSE 'one' END, now() > o.order_date
        FROM orders AS o JOIN order_items AS oi ON oi.order_id = o.id
        JOIN products AS p ON p.id = oi.product_id JOIN customers AS c ON c.id = o.customer_id
        WHERE o.order_date >= current_date - interval '10 years' AND p.name ILIKE 'product%'
        GROUP BY 1, 2, o.order_date ORDER BY 1 LIMIT 3
    """
    result = await run(query, make_settings(database, tmp_path))
    assert result["row_count"] == 3
    assert result["rows"][0][0] == "2024-01"


def test_the_reader_role_cannot_read_or_act_past_its_tables(database: str) -> None:
    """Without the query checks, the database itself still refuses the bypasses."""
    target = SqlTarget("postgres", READER_URL)
    for query in (
        "SELECT * FROM secrets",
        "SELECT query_to_xml('select value from secrets', true, true, '')",
        "SELECT pg_read_file('/etc/hostname')",
        "SELECT pg_stat_reset()",
        'SELECT * FROM "Products"',
    ):
        with pytest.raises(ToolInputError, match="permission denied"):
            execute_readonly(target, query, row_cap=10, timeout_s=5)
    assert execute_readonly(target, "SELECT count(*) FROM orders", row_cap=1, timeout_s=5).rows


def test_reader_role_is_least_privilege(database: str) -> None:
    row = direct(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
        f"rolinherit, rolconfig FROM pg_roles WHERE rolname = '{READER}'"
    )[0]
    assert row[:6] == (False, False, False, False, False, False)
    assert {"default_transaction_read_only=on", "search_path=public"} <= set(row[6])
    create_readonly_role(URL, READER, "reader-pw", TABLES)  # idempotent: resets, no error
    grants = direct(
        "SELECT table_name FROM information_schema.role_table_grants "
        f"WHERE grantee = '{READER}' ORDER BY 1"
    )
    assert [g[0] for g in grants] == sorted(TABLES)


async def test_a_superuser_connection_is_refused_unless_allowed(
    database: str, tmp_path: Any
) -> None:
    settings = make_settings(database, tmp_path, url=database)
    with pytest.raises(ToolFatalError, match="superuser"):
        await run("SELECT count(*) FROM orders", settings)
    allowed = await run("SELECT count(*) FROM orders", as_superuser(database, tmp_path))
    assert allowed["rows"] == [[60]]


# Issue 18 item 6: results are bounded in bytes, not only rows.
async def test_one_huge_row_is_refused_by_the_server(database: str, tmp_path: Any) -> None:
    """`repeat('x', 10**7)` x 60 rows was 1.7 GB in the calling process."""
    query = "SELECT repeat('x', 10000000) AS x FROM generate_series(1, 60) AS g"
    with pytest.raises(ToolInputError, match="over 256000 bytes"):
        await run(query, make_settings(database, tmp_path))


async def test_fetching_stops_at_the_byte_cap_and_says_so(database: str, tmp_path: Any) -> None:
    query = "SELECT g, repeat('x', 100000) AS x FROM generate_series(1, 60) AS g ORDER BY g"
    settings = make_settings(database, tmp_path, max_result_bytes=1_000_000)
    result = await run(query, settings)
    assert result["truncated"] is True
    assert 1 <= result["row_count"] < 10
    assert [r[0] for r in result["rows"]] == list(range(1, result["row_count"] + 1))
    assert "1000000-byte cap" in result["note"]


def test_keel_sql_role_creates_a_role_the_tool_runs_as(database: str, tmp_path: Any) -> None:
    """The documented production setup, end to end: `keel sql-role`, then the tool as it."""
    role = f"keel_cli_reader_{os.getpid()}"
    run_cli = keel_runner(tmp_path)
    try:
        done = run_cli("sql-role", "--admin-url", database, "--role", role,
                       KEEL_SQL_ROLE_PASSWORD="pw")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "customers, products, orders, order_items" in done.stderr
        url = f"postgresql://{role}:pw@127.0.0.1:5432/{DB_NAME}"
        target = SqlTarget("postgres", url)
        assert execute_readonly(target, "SELECT count(*) FROM orders", row_cap=1, timeout_s=5)
        with pytest.raises(ToolInputError, match="permission denied"):
            execute_readonly(target, "SELECT * FROM secrets", row_cap=1, timeout_s=5)
    finally:
        with _admin() as admin, psycopg.connect(URL, autocommit=True) as conn:
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f'DROP OWNED BY "{role}"')  # its grants, so the role can go
                admin.execute(f'DROP ROLE "{role}"')
