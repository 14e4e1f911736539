"""A month's sales figures computed from raw rows in plain Python, for checking reports.

Independent of `keel.tools.reports`: trivial SELECTs of whole tables, then the filtering by
month and status, the sums, the ranking and the percentages are done here.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

HEADLINE = "Write the sales report for last month"


def month_before(month: str) -> str:
    year, m = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if m == 1 else f"{year}-{m - 1:02d}"


def last_month(today: date) -> str:
    return month_before(f"{today:%Y-%m}")


@dataclass(frozen=True)
class Truth:
    month: str
    revenue: float
    completed: int
    by_status: dict[str, int]
    units: int
    top: list[tuple[str, int, float]]
    """(product, units, revenue), best first."""
    previous_revenue: float
    previous_completed: int

    @property
    def change_pct(self) -> float:
        return round((self.revenue - self.previous_revenue) / self.previous_revenue * 100, 1)

    @property
    def orders_change_pct(self) -> float:
        return round((self.completed - self.previous_completed) / self.previous_completed * 100, 1)


def _one(conn: sqlite3.Connection, month: str) -> tuple[float, int, Counter[str], int, dict]:
    orders = list(conn.execute("SELECT id, order_date, status FROM orders"))
    in_month = {oid: status for oid, day, status in orders if day[:7] == month}
    by_status = Counter(in_month.values())
    completed = {oid for oid, status in in_month.items() if status == "completed"}
    revenue = 0.0
    units = 0
    per_product: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    for order_id, product_id, qty, price in conn.execute(
        "SELECT order_id, product_id, quantity, unit_price FROM order_items"
    ):
        if order_id in completed:
            revenue += qty * price
            units += qty
            per_product[product_id][0] += qty
            per_product[product_id][1] += qty * price
    return revenue, len(completed), by_status, units, per_product


def truth(db: Path, month: str, top_n: int = 5) -> Truth:
    with sqlite3.connect(db) as conn:
        revenue, completed, by_status, units, per_product = _one(conn, month)
        previous, prev_completed, _, _, _ = _one(conn, month_before(month))
        names = dict(conn.execute("SELECT id, name FROM products"))
    ranked = sorted(per_product.items(), key=lambda kv: kv[1][1], reverse=True)[:top_n]
    return Truth(
        month=month,
        revenue=round(revenue, 2),
        completed=completed,
        by_status=dict(by_status),
        units=units,
        top=[(names[pid], int(u), round(r, 2)) for pid, (u, r) in ranked],
        previous_revenue=round(previous, 2),
        previous_completed=prev_completed,
    )
