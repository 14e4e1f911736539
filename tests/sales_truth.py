"""The right answer to the sample sales question, computed from raw rows in plain Python.

Deliberately independent of the SQL the agent writes: it reads the four tables with
trivial SELECTs and does the filtering, grouping and ranking itself.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

SALES_QUESTION = (
    "Which 3 products had the highest revenue last month, and what was their total revenue?"
)


def last_month(today: date) -> tuple[date, date]:
    """First day of last month and first day of this month."""
    this_month = today.replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1), this_month


def top_products(db: Path, today: date, n: int = 3) -> list[tuple[str, float]]:
    start, end = last_month(today)
    with sqlite3.connect(db) as conn:
        completed = {
            oid
            for oid, day, status in conn.execute("SELECT id, order_date, status FROM orders")
            if status == "completed" and start <= date.fromisoformat(day) < end
        }
        revenue: dict[int, float] = defaultdict(float)
        for order_id, product_id, qty, price in conn.execute(
            "SELECT order_id, product_id, quantity, unit_price FROM order_items"
        ):
            if order_id in completed:
                revenue[product_id] += qty * price
        names = dict(conn.execute("SELECT id, name FROM products"))
    ranked = sorted(revenue.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return [(names[pid], round(total, 2)) for pid, total in ranked]
