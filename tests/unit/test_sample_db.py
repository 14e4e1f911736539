"""The sample database: deterministic, relative to `today`, and with unambiguous answers.

Expected answers are computed here from raw rows in plain Python, never taken from the
generator, and compared with what SQL (through the `sql_query` tool) says.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from keel.config import Settings
from keel.tools import ToolContext, sql_query
from keel.tools.sample_db import build_sample_db, ensure_sample_db

TODAY = date(2025, 3, 15)
MANY_TODAYS = [
    date(2024, 1, 1),
    date(2024, 2, 29),
    date(2024, 3, 1),
    date(2024, 12, 31),
    date(2025, 1, 31),
    date(2026, 6, 30),
    *(date(2023, 7, 14) + timedelta(days=37 * k) for k in range(24)),
]


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


def month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def revenue_by_month(path: Path) -> dict[str, dict[int, float]]:
    """Revenue per product per 'YYYY-MM', in Python from the raw tables."""
    completed = {
        oid: day[:7] for oid, day, status in rows(path, "SELECT id, order_date, status FROM orders")
        if status == "completed"
    }  # fmt: skip
    revenue: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for order_id, product_id, quantity, price in rows(
        path, "SELECT order_id, product_id, quantity, unit_price FROM order_items"
    ):
        if order_id in completed:
            revenue[completed[order_id]][product_id] += quantity * price
    return revenue


def names(path: Path) -> dict[int, str]:
    return {pid: name for pid, name in rows(path, "SELECT id, name FROM products")}


async def top3_via_tool(path: Path, start: date, end: date, home: Path) -> list[str]:
    query = (
        "SELECT p.name FROM order_items AS oi "
        "JOIN orders AS o ON o.id = oi.order_id JOIN products AS p ON p.id = oi.product_id "
        f"WHERE o.status = 'completed' AND o.order_date >= '{start}' AND o.order_date < '{end}' "
        "GROUP BY p.id ORDER BY SUM(oi.quantity * oi.unit_price) DESC LIMIT 3"
    )
    settings = Settings(home=home, database_url=f"sqlite:///{path}")
    args = sql_query.validate({"query": query})
    result = json.loads(await sql_query.invoke(args, ToolContext(settings, tool_call_id="c1")))
    return [row[0] for row in result["rows"]]


def test_same_today_and_seed_give_identical_bytes(tmp_path: Path) -> None:
    a = build_sample_db(tmp_path / "a.db", today=TODAY)
    b = build_sample_db(tmp_path / "b.db", today=TODAY)
    other_seed = build_sample_db(tmp_path / "c.db", today=TODAY, seed=8)
    other_day = build_sample_db(tmp_path / "d.db", today=TODAY + timedelta(days=1))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != other_seed.read_bytes()
    assert a.read_bytes() != other_day.read_bytes()


def test_build_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "sample.db"
    target.parent.mkdir()
    target.write_text("old contents")
    build_sample_db(target, today=TODAY)
    assert sorted(p.name for p in target.parent.iterdir()) == ["sample.db"]
    assert rows(target, "SELECT value FROM meta WHERE key = 'generated_on'") == [("2025-03-15",)]


@pytest.mark.parametrize("today", [TODAY, date(2024, 2, 29), date(2026, 1, 1)])
def test_orders_span_at_least_18_months_ending_today(tmp_path: Path, today: date) -> None:
    path = build_sample_db(tmp_path / "s.db", today=today)
    days = {date.fromisoformat(d) for (d,) in rows(path, "SELECT DISTINCT order_date FROM orders")}
    assert max(days) == today
    assert min(days) <= month_start(today, back=18)
    months = {(d.year, d.month) for d in days}
    expected = {
        (m.year, m.month) for m in (month_start(today, back=k) for k in range(19))
    }  # every month of the window has orders
    assert expected <= months


def test_sizes_statuses_and_integrity_are_realistic(tmp_path: Path) -> None:
    path = build_sample_db(tmp_path / "s.db", today=TODAY)
    (customers,) = rows(path, "SELECT count(*) FROM customers")[0]
    (products, categories) = rows(path, "SELECT count(*), count(DISTINCT category) FROM products")[
        0
    ]
    (orders,) = rows(path, "SELECT count(*) FROM orders")[0]
    assert 150 <= customers <= 400 and 30 <= products <= 60 and categories >= 3
    assert 2000 <= orders <= 10000
    statuses = {s for (s,) in rows(path, "SELECT status FROM orders")}
    assert {"completed", "cancelled", "refunded"} <= statuses
    orphans = rows(
        path,
        "SELECT count(*) FROM order_items AS oi LEFT JOIN orders AS o ON o.id = oi.order_id "
        "LEFT JOIN products AS p ON p.id = oi.product_id WHERE o.id IS NULL OR p.id IS NULL",
    )
    assert orphans == [(0,)]
    early = rows(
        path,
        "SELECT count(*) FROM orders AS o JOIN customers AS c ON c.id = o.customer_id "
        "WHERE o.order_date < c.created_at",
    )
    assert early == [(0,)]
    assert rows(path, "SELECT count(*) FROM order_items WHERE quantity < 1 OR unit_price <= 0") == [
        (0,)
    ]


def test_status_changes_revenue(tmp_path: Path) -> None:
    """Ignoring the status would give a different (wrong) answer, so the status matters."""
    path = build_sample_db(tmp_path / "s.db", today=TODAY)
    completed = sum(sum(m.values()) for m in revenue_by_month(path).values())
    everything = sum(q * p for q, p in rows(path, "SELECT quantity, unit_price FROM order_items"))
    assert everything - completed > 0.05 * everything


def test_ensure_builds_reuses_and_rebuilds_when_today_changes(tmp_path: Path) -> None:
    path = ensure_sample_db(tmp_path, today=TODAY)
    assert path == tmp_path / "sample.db"
    first = path.stat()
    assert ensure_sample_db(tmp_path, today=TODAY).stat().st_ino == first.st_ino

    later = TODAY + timedelta(days=40)
    ensure_sample_db(tmp_path, today=later)
    assert path.stat().st_ino != first.st_ino
    assert rows(path, "SELECT max(order_date) FROM orders") == [(later.isoformat(),)]
    assert rows(path, "SELECT value FROM meta WHERE key = 'generated_on'") == [(later.isoformat(),)]


def test_ensure_rebuilds_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "sample.db").write_bytes(os.urandom(4096))
    path = ensure_sample_db(tmp_path, today=TODAY)
    assert rows(path, "SELECT max(order_date) FROM orders") == [(TODAY.isoformat(),)]


@pytest.mark.parametrize("today", MANY_TODAYS, ids=str)
async def test_top3_last_month_is_unique_and_sql_agrees(tmp_path: Path, today: date) -> None:
    path = build_sample_db(tmp_path / "s.db", today=today)
    revenue = revenue_by_month(path)
    for month, by_product in revenue.items():
        top = sorted(by_product.values(), reverse=True)[:4]
        gaps = [a - b for a, b in itertools.pairwise(top)]
        assert min(gaps) >= 1.0, f"near-tie among the top products in {month}: {top}"

    start, end = month_start(today, back=1), month_start(today)
    last = revenue[start.isoformat()[:7]]
    expected = [names(path)[pid] for pid in sorted(last, key=last.__getitem__, reverse=True)[:3]]
    assert await top3_via_tool(path, start, end, tmp_path) == expected
