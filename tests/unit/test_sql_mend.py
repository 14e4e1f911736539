"""Slips with one obvious meaning are mended before the query is checked, not refused.

Each mended query is also run on a small SQLite database, beside the query written right,
and must return the same rows: a mend that changes what a right query means fails here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from keel.nodes import check_query, schema_from_prompt

SCHEMA = schema_from_prompt(
    "Tables:\n- orders(id, customer_id, order_date, status)\n"
    "- order_items(id, order_id, product_id, quantity, unit_price)\n"
    "- products(id, name, category, unit_price)\n"
)


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        """
        CREATE TABLE orders (id INT, customer_id INT, order_date TEXT, status TEXT);
        CREATE TABLE order_items (id INT, order_id INT, product_id INT, quantity INT,
                                  unit_price REAL);
        CREATE TABLE products (id INT, name TEXT, category TEXT, unit_price REAL);
        INSERT INTO products VALUES (1, 'Lamp', 'Home', 10), (2, 'Desk', 'Home', 100);
        INSERT INTO orders VALUES (1, 1, '2026-05-03', 'completed'),
            (2, 2, '2026-06-09', 'completed'), (3, 1, '2026-06-20', 'completed');
        INSERT INTO order_items VALUES (1, 1, 1, 3, 10), (2, 2, 2, 1, 100),
            (3, 3, 1, 2, 10), (4, 3, 2, 2, 100);
        """
    )
    yield conn
    conn.close()


REVENUE = "SUM(oi.quantity * oi.unit_price)"
JOINED = "FROM order_items oi JOIN orders o ON o.id = oi.order_id"

CASES = [
    # (as the model wrote it, as it should have been written)
    (
        f"SELECT {REVENUE} {JOINED} GROUP BY substr(o.order_date, 1, 7) ORDER BY revenue DESC",
        f"SELECT substr(o.order_date, 1, 7) AS month, {REVENUE} AS revenue {JOINED}"
        " GROUP BY 1 ORDER BY revenue DESC",
    ),
    (
        f"SELECT {REVENUE} AS total {JOINED} GROUP BY strftime('%Y-%m', o.order_date)"
        " ORDER BY revenue",
        f"SELECT strftime('%Y-%m', o.order_date) AS month, {REVENUE} AS total {JOINED}"
        " GROUP BY 1 ORDER BY total",
    ),
    (
        "SELECT p.name, SUM(oi.quantity) FROM products p JOIN order_items oi"
        " ON oi.product_id = p.id GROUP BY p.name ORDER BY units DESC",
        "SELECT p.name, SUM(oi.quantity) AS units FROM products p JOIN order_items oi"
        " ON oi.product_id = p.id GROUP BY p.name ORDER BY units DESC",
    ),
    ("SELECT COUNT(*) / 2 FROM orders", "SELECT COUNT(*) / 2.0 FROM orders"),
    (
        "SELECT SUM(order_items.quantity * order_items.unit_price) FROM order_items AS oi"
        " JOIN orders AS o ON o.id = oi.order_id WHERE orders.order_date >= '2026-06-01'",
        f"SELECT {REVENUE} {JOINED} WHERE o.order_date >= '2026-06-01'",
    ),
    (  # order_items used, never joined: joined along order_items.order_id
        f"SELECT {REVENUE} FROM orders AS o WHERE o.order_date >= '2026-06-01'",
        f"SELECT {REVENUE} {JOINED} WHERE o.order_date >= '2026-06-01'",
    ),
]


@pytest.mark.parametrize(("written", "meant"), CASES)
def test_a_slip_is_mended_into_the_query_meant(
    db: sqlite3.Connection, written: str, meant: str
) -> None:
    mended = check_query(written, SCHEMA, "Which month had the highest revenue?")
    assert db.execute(mended).fetchall() == db.execute(meant).fetchall()
    lenient = check_query(written, SCHEMA, strict=False)  # the last try is mended too
    assert db.execute(lenient).fetchall() == db.execute(meant).fetchall()


BOTH_INCLUDED = "How many orders from 2026-06-09 to 2026-06-20, both days included?"
IN_RANGE = "SELECT COUNT(*) FROM orders WHERE order_date >= '2026-06-09' AND order_date"


@pytest.mark.parametrize(
    ("question", "written", "meant"),
    [
        (
            BOTH_INCLUDED,
            f"{IN_RANGE} < '2026-06-20'",
            f"{IN_RANGE} <= '2026-06-20'",
        ),
        (
            "How many orders from 2026-06-09 to 2026-06-20 (the 20th excluded)?",
            f"{IN_RANGE} < '2026-06-20'",
            f"{IN_RANGE} < '2026-06-20'",
        ),
    ],
)
def test_a_range_with_both_ends_included_keeps_its_last_day(
    db: sqlite3.Connection, question: str, written: str, meant: str
) -> None:
    mended = check_query(written, SCHEMA, question)
    assert db.execute(mended).fetchall() == db.execute(meant).fetchall()


LAMP = "SUM(CASE WHEN p.name = 'Lamp' THEN oi.quantity * oi.unit_price ELSE 0 END)"
DESK = "SUM(CASE WHEN p.name = 'Desk' THEN oi.quantity * oi.unit_price ELSE 0 END)"
SOLD = "FROM order_items oi JOIN products p ON p.id = oi.product_id"
JUNE = "SUM(CASE WHEN o.order_date >= '2026-06-01' THEN oi.quantity ELSE 0 END)"
MAY = "SUM(CASE WHEN o.order_date >= '2026-05-01' AND o.order_date < '2026-06-01'"
MAY += " THEN oi.quantity ELSE 0 END)"


MORE = "Did 'Lamp' make more revenue than 'Desk'?"
LESS = "Did 'Lamp' make less revenue than 'Desk'?"
MONTHS = "Were more units sold in June 2026 than in May 2026?"


@pytest.mark.parametrize(
    ("question", "written", "meant"),
    [
        (MORE, f"SELECT {DESK} > {LAMP} {SOLD}", f"SELECT {LAMP} > {DESK} {SOLD}"),
        (MORE, f"SELECT {DESK} < {LAMP} {SOLD}", f"SELECT {DESK} < {LAMP} {SOLD}"),
        (LESS, f"SELECT {LAMP} > {DESK} {SOLD}", f"SELECT {LAMP} < {DESK} {SOLD}"),
        (MONTHS, f"SELECT {MAY} > {JUNE} {JOINED}", f"SELECT {JUNE} > {MAY} {JOINED}"),
    ],
)
def test_a_comparison_written_the_wrong_way_round_is_turned(
    db: sqlite3.Connection, question: str, written: str, meant: str
) -> None:
    mended = check_query(written, SCHEMA, question)
    assert db.execute(mended).fetchall() == db.execute(meant).fetchall()


@pytest.mark.parametrize(
    "right",
    [
        f"SELECT substr(o.order_date, 1, 7) AS m, {REVENUE} AS r {JOINED} GROUP BY m ORDER BY r",
        "SELECT p.name FROM products p ORDER BY p.unit_price DESC",
        "SELECT p.category, COUNT(*) FROM products p GROUP BY p.category ORDER BY 2",
        f"SELECT {REVENUE} AS revenue {JOINED} WHERE o.status = 'completed'",
        "SELECT COUNT(*) AS n, SUM(quantity) AS q FROM order_items ORDER BY n",
    ],
)
def test_a_right_query_returns_what_it_did(db: sqlite3.Connection, right: str) -> None:
    mended = check_query(right, SCHEMA)
    assert db.execute(mended).fetchall() == db.execute(right).fetchall()
