"""The sample database as the generalisation eval reads it: whole tables, trivial SELECTs.

Truths are computed in plain Python from these rows (filtering, grouping and ranking here),
never from SQL an agent would write, so a truth cannot share an agent's mistake.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any


@dataclass
class _Data:
    """The tables as rows by id; `today` is the database's `generated_on` day."""

    today: date
    customers: dict[int, tuple[str, str, date]]
    """id → (name, country, created_at)"""
    products: dict[int, tuple[str, str, float]]
    """id → (name, category, list price)"""
    orders: dict[int, tuple[int, date, str]]
    """id → (customer id, order date, status)"""
    items: list[tuple[int, int, int, float]]
    """(order id, product id, quantity, unit price charged)"""
    emails: dict[int, str]
    """id → email (unique, unlike names)"""

    def orders_in(self, start: date, end: date, status: str | None = None) -> set[int]:
        return {
            oid
            for oid, (_, day, st) in self.orders.items()
            if start <= day < end and (status is None or st == status)
        }

    def value(
        self, oids: set[int], key: Callable[[int, int], Any] | None = None
    ) -> defaultdict[Any, float]:
        """Σ quantity × unit price of the items of `oids`, per `key(order, product)`."""
        totals: defaultdict[Any, float] = defaultdict(float)
        for oid, pid, qty, price in self.items:
            if oid in oids:
                totals[key(oid, pid) if key else "all"] += qty * price
        return totals


def _load(db: Path) -> _Data:
    with sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True) as conn:
        (today,) = conn.execute("SELECT value FROM meta WHERE key = 'generated_on'").fetchone()
        customers = {
            cid: (name, country, date.fromisoformat(created))
            for cid, name, country, created in conn.execute(
                "SELECT id, name, country, created_at FROM customers"
            )
        }
        products = {
            pid: (name, cat, price)
            for pid, name, cat, price in conn.execute(
                "SELECT id, name, category, unit_price FROM products"
            )
        }
        orders = {
            oid: (cid, date.fromisoformat(day), status)
            for oid, cid, day, status in conn.execute(
                "SELECT id, customer_id, order_date, status FROM orders"
            )
        }
        items = list(
            conn.execute("SELECT order_id, product_id, quantity, unit_price FROM order_items")
        )
        emails = dict(conn.execute("SELECT id, email FROM customers"))
    return _Data(date.fromisoformat(today), customers, products, orders, items, emails)
