"""The `sql_query` tool against a real PostgreSQL: guard rails plus a READ ONLY transaction."""

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

pytestmark = pytest.mark.postgres

SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = f"keel_sqltool_test_{os.getpid()}"
URL = f"{SERVER}/{DB_NAME}"

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
    yield URL
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def direct(query: str) -> list[Any]:
    with psycopg.connect(URL) as conn:
        return conn.execute(query).fetchall()


def counts() -> list[Any]:
    return [
        direct(f"SELECT count(*) FROM {t}")[0][0]
        for t in ("customers", "products", "orders", "order_items", "secrets")
    ]


def make_settings(database: str, tmp_path: Any, **sql: Any) -> Settings:
    return Settings(home=tmp_path, database_url=database, sql=SqlToolSettings(**sql))


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
    before = counts()
    with pytest.raises(ToolInputError, match="read-only transaction"):
        execute_readonly(SqlTarget("postgres", database), write, row_cap=10, timeout_s=5)
    assert counts() == before


async def test_statement_timeout_cancels_pg_sleep(database: str, tmp_path: Any) -> None:
    settings = make_settings(database, tmp_path, statement_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ToolInputError) as info:
        await run("SELECT pg_sleep(10)", settings)
    assert info.value.code is ErrorCode.TOOL_TIMEOUT
    assert time.monotonic() - started < 5


async def test_unreachable_server_is_fatal(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(ToolFatalError):
        await run("SELECT 1", settings)
