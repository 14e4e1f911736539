"""A deterministic sample sales database (SQLite) for the `sql_query` tool and the demos.

Tables (the `meta` table is bookkeeping and is not in the SQL allow-list):

- `customers(id, name, email, country, created_at)`
- `products(id, name, category, unit_price)`
- `orders(id, customer_id, order_date, status)`, `status` in
  `completed`, `cancelled`, `refunded`, `pending`
- `order_items(id, order_id, product_id, quantity, unit_price)`: `unit_price` is the price
  actually charged (sometimes discounted below the product's list price)

Dates are ISO `YYYY-MM-DD` text. Orders cover every day from the first day of the month 19
months before `today` up to `today` inclusive, so there are always at least 18 full months.

**Revenue** means `SUM(order_items.quantity * order_items.unit_price)` over the items of
orders whose `status = 'completed'`; cancelled, refunded and pending orders earn nothing.
A month is a calendar month of `orders.order_date`. The generator nudges quantities so
that, in every month, the five best products by revenue are separated by at least
`MIN_REVENUE_GAP`, so "top 3 products last month" has exactly one right answer.

The same `today` and `seed` give a byte-for-byte identical file. This module deliberately
offers no way to compute answers from the data: tests compute them independently.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

__all__ = [
    "MIN_REVENUE_GAP",
    "MONTHS_OF_HISTORY",
    "SAMPLE_DB_NAME",
    "SAMPLE_DB_NOTES",
    "build_sample_db",
    "ensure_sample_db",
]

SAMPLE_DB_NAME = "sample.db"
MONTHS_OF_HISTORY = 19
"""Full calendar months before the current one that hold orders."""
MIN_REVENUE_GAP = 25.0
"""Smallest revenue difference between neighbours among a month's top products."""
_TOP_SEPARATED = 5
_STATUSES = (("completed", 86), ("cancelled", 7), ("refunded", 5), ("pending", 2))

_SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    country TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    unit_price REAL NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    order_date TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL
);
CREATE INDEX orders_by_date ON orders(order_date);
CREATE INDEX items_by_order ON order_items(order_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

SAMPLE_DB_NOTES = (
    "Order dates are 'YYYY-MM-DD' text; orders.status is one of completed, pending, cancelled,"
    " refunded. Revenue counts only completed orders: SUM(order_items.quantity *"
    " order_items.unit_price) of the items of orders with status = 'completed'. For example,"
    " revenue per product in March 2026:\n"
    "SELECT p.name, ROUND(SUM(oi.quantity * oi.unit_price), 2) AS revenue FROM order_items oi"
    " JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id"
    " WHERE o.status = 'completed' AND o.order_date >= '2026-03-01'"
    " AND o.order_date < '2026-04-01' GROUP BY p.name ORDER BY revenue DESC"
)
"""What the model is told about the sample data beyond its schema (see `tools.sql_context`)."""

# fmt: off
_FIRST = ("Ada", "Ben", "Chloe", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
          "Kira", "Liam", "Maya", "Nils", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tariq")
_LAST = ("Andersen", "Brooks", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
         "Ito", "Jensen", "Kowalski", "Lopez", "Moreau", "Novak", "Okafor", "Petrov")
_COUNTRIES = (("US", 30), ("DE", 14), ("GB", 12), ("FR", 10), ("CA", 8), ("NL", 6),
              ("ES", 6), ("IT", 5), ("JP", 5), ("BR", 4))
_CATALOG: dict[str, tuple[tuple[str, float, float], ...]] = {
    # category: (name, min list price, max list price) per product line
    "Hardware": (("Laptop", 700, 1900), ("Monitor", 140, 650), ("Keyboard", 25, 180),
                 ("Mouse", 12, 95), ("Docking Station", 90, 320), ("Webcam", 35, 160),
                 ("Headset", 30, 260), ("Tablet", 220, 900), ("Printer", 90, 480),
                 ("Router", 45, 300)),
    "Software": (("Office Suite", 70, 260), ("Antivirus", 20, 90), ("Photo Editor", 40, 240),
                 ("Accounting", 60, 400), ("Backup Tool", 15, 120), ("IDE License", 90, 500),
                 ("VPN Subscription", 30, 110), ("Design Suite", 200, 700)),
    "Accessories": (("USB-C Cable", 6, 30), ("Laptop Bag", 25, 140), ("Stand", 20, 90),
                    ("Screen Protector", 8, 40), ("Power Bank", 18, 110), ("Mouse Pad", 5, 35),
                    ("Card Reader", 10, 45), ("Surge Protector", 15, 70)),
    "Services": (("Setup Service", 40, 150), ("Extended Warranty", 50, 300),
                 ("Data Recovery", 120, 600), ("Training Session", 80, 350),
                 ("On-site Repair", 90, 400), ("Cloud Storage Plan", 30, 200)),
}
# fmt: on


@dataclass
class _Item:
    order_id: int
    product_id: int
    quantity: int
    unit_price: float


def build_sample_db(path: Path, *, today: date | None = None, seed: int = 7) -> Path:
    """Write the sample database to `path` atomically (temp file, then rename) and return it."""
    today = today or date.today()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write(tmp, today=today, seed=seed)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def ensure_sample_db(home: Path, *, today: date | None = None) -> Path:
    """Return `home / "sample.db"`, (re)building it if missing, unreadable or from another day."""
    today = today or date.today()
    path = Path(home) / SAMPLE_DB_NAME
    if _generated_on(path) != today.isoformat():
        build_sample_db(path, today=today)
    return path


def _generated_on(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generated_on'").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def _first_day(today: date) -> date:
    months = today.year * 12 + (today.month - 1) - MONTHS_OF_HISTORY
    return date(months // 12, months % 12 + 1, 1)


def _write(target: Path, *, today: date, seed: int) -> None:
    rng = random.Random(seed)
    start = _first_day(today)
    customers = _customers(rng, start, today)
    products = _products(rng)
    orders, items = _orders(rng, customers, products, start, today)
    _separate_top_products(orders, items)
    with contextlib.closing(sqlite3.connect(target)) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # a temp file: fsync once, before the rename
        conn.executescript(_SCHEMA)
        with conn:
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", customers)
            conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", [p[:4] for p in products])
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", orders)
            conn.executemany(
                "INSERT INTO order_items VALUES (?, ?, ?, ?, ?)",
                [(i, it.order_id, it.product_id, it.quantity, it.unit_price)
                 for i, it in enumerate(items, start=1)],
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("generated_on", today.isoformat()), ("seed", str(seed))],
            )


_Customer = tuple[int, str, str, str, str]
_Product = tuple[int, str, str, float, float]
"""id, name, category, list price, popularity weight."""
_Order = tuple[int, int, str, str]


def _customers(rng: random.Random, start: date, today: date) -> list[_Customer]:
    countries = [c for c, _ in _COUNTRIES]
    weights = [w for _, w in _COUNTRIES]
    span = (today - start).days
    rows: list[_Customer] = []
    for cid in range(1, 201):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        # Most customers predate the window; the rest sign up during it.
        offset = rng.randint(-365, -1) if rng.random() < 0.6 else rng.randint(0, span - 30)
        created = start + timedelta(days=offset)
        email = f"{first}.{last}{cid}@example.com".lower()
        country = rng.choices(countries, weights)[0]
        rows.append((cid, f"{first} {last}", email, country, created.isoformat()))
    return rows


def _products(rng: random.Random) -> list[_Product]:
    """40 products: a Basic and a Pro tier of each goods line, one of each service."""
    lines: list[tuple[str, str, float, float]] = []
    for cat, entries in _CATALOG.items():
        for name, lo, hi in entries:
            if cat == "Services":
                lines.append((cat, name, lo, hi))
            else:
                mid = (lo + hi) / 2
                lines += [(cat, f"{name} Basic", lo, mid), (cat, f"{name} Pro", mid, hi)]
    rng.shuffle(lines)
    rows: list[_Product] = []
    used: set[float] = set()
    for cat, name, lo, hi in lines[:40]:
        price = round(rng.uniform(lo, hi), 2)
        while price in used:
            price = round(price + 0.37, 2)
        used.add(price)
        rows.append((len(rows) + 1, name, cat, price, rng.paretovariate(1.3)))
    return rows


def _orders(
    rng: random.Random,
    customers: list[_Customer],
    products: list[_Product],
    start: date,
    today: date,
) -> tuple[list[_Order], list[_Item]]:
    statuses = [s for s, _ in _STATUSES]
    status_weights = [w for _, w in _STATUSES]
    weights = [p[4] for p in products]
    orders: list[_Order] = []
    items: list[_Item] = []
    by_signup = sorted(customers, key=lambda c: (c[4], c[0]))
    eligible: list[int] = []
    day = start
    while day <= today:
        iso = day.isoformat()
        while len(eligible) < len(by_signup) and by_signup[len(eligible)][4] <= iso:
            eligible.append(by_signup[len(eligible)][0])
        per_day = rng.randint(2, 8) + (2 if day.weekday() < 5 else 0)
        for _ in range(per_day):
            oid = len(orders) + 1
            status = rng.choices(statuses, status_weights)[0]
            if (today - day).days < 4 and rng.random() < 0.5:
                status = "pending"
            orders.append((oid, rng.choice(eligible), iso, status))
            chosen = rng.choices(products, weights, k=rng.randint(1, 4))
            for product in dict.fromkeys(chosen):
                price = product[3]
                if rng.random() < 0.12:
                    price = round(price * 0.9, 2)
                items.append(_Item(oid, product[0], rng.randint(1, 5), price))
        day += timedelta(days=1)
    return orders, items


def _separate_top_products(orders: list[_Order], items: list[_Item]) -> None:
    """Raise quantities until each month's top products differ by `MIN_REVENUE_GAP` or more."""
    month_of = {o[0]: o[2][:7] for o in orders if o[3] == "completed"}
    by_month: dict[str, dict[int, list[_Item]]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        if it.order_id in month_of:
            by_month[month_of[it.order_id]][it.product_id].append(it)
    for products in by_month.values():
        while True:
            revenue = {
                pid: sum(it.quantity * it.unit_price for it in its) for pid, its in products.items()
            }
            ranked = sorted(revenue, key=lambda pid: (-revenue[pid], pid))[: _TOP_SEPARATED + 1]
            close = next(
                (
                    i
                    for i in range(len(ranked) - 1)
                    if revenue[ranked[i]] - revenue[ranked[i + 1]] < MIN_REVENUE_GAP
                ),
                None,
            )
            if close is None:
                break
            bump = min(products[ranked[close]], key=lambda it: it.quantity)
            bump.quantity += 1
