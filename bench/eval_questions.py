"""The local-model eval set: questions over the sample database and the calculator.

Every expected answer is computed here in plain Python from raw rows (trivial SELECTs, then
filtering, grouping and ranking in Python), never from the SQL an agent would write.
A reply is correct when it contains every expected name (in order, where order matters) and
every expected number, to 0.01 or to the precision the reply writes it with.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

__all__ = ["Expected", "Question", "is_correct", "questions"]


@dataclass(frozen=True)
class Expected:
    names: tuple[str, ...] = ()
    """Names the reply must contain, in this order."""
    numbers: tuple[float, ...] = ()
    """Numbers the reply must contain."""
    alternatives: tuple[tuple[float, ...], ...] = field(default_factory=tuple)
    """Other acceptable number sets (e.g. per-item values instead of their total)."""


@dataclass(frozen=True)
class Question:
    text: str
    expected: Expected


_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def _numbers(text: str) -> list[tuple[float, float]]:
    found = []
    for literal in _NUMBER.findall(text):
        plain = literal.replace(",", "")
        decimals = len(plain.partition(".")[2])
        found.append((float(plain), max(0.01, 0.5 * 10.0**-decimals) + 1e-9))
    return found


def _has_numbers(text: str, wanted: tuple[float, ...]) -> bool:
    found = _numbers(text)
    return all(any(abs(v - w) <= tol for v, tol in found) for w in wanted)


def is_correct(reply: str, expected: Expected) -> bool:
    lowered = reply.lower()
    positions = [lowered.find(name.lower()) for name in expected.names]
    if any(p < 0 for p in positions) or positions != sorted(positions):
        return False
    return any(
        _has_numbers(reply, numbers) for numbers in (expected.numbers, *expected.alternatives)
    )


@dataclass
class _Data:
    products: dict[int, tuple[str, str, float]]
    customers: dict[int, str]
    orders: dict[int, tuple[int, date, str]]
    items: list[tuple[int, int, int, float]]


def _load(db: Path) -> _Data:
    with sqlite3.connect(db) as conn:
        products = {
            pid: (name, category, price)
            for pid, name, category, price in conn.execute(
                "SELECT id, name, category, unit_price FROM products"
            )
        }
        customers = dict(conn.execute("SELECT id, country FROM customers"))
        orders = {
            oid: (cid, date.fromisoformat(day), status)
            for oid, cid, day, status in conn.execute(
                "SELECT id, customer_id, order_date, status FROM orders"
            )
        }
        items = list(
            conn.execute("SELECT order_id, product_id, quantity, unit_price FROM order_items")
        )
    return _Data(products, customers, orders, items)


def _months(today: date) -> tuple[tuple[date, date], tuple[date, date]]:
    this = today.replace(day=1)
    last = (this - timedelta(days=1)).replace(day=1)
    following = (this + timedelta(days=32)).replace(day=1)
    return (last, this), (this, following)


def questions(db: Path, today: date) -> list[Question]:
    """The eval set with answers computed from the raw rows of `db` as of `today`."""
    data = _load(db)
    (last_start, last_end), (this_start, this_end) = _months(today)

    def in_range(oid: int, start: date, end: date, status: str = "completed") -> bool:
        _, day, st = data.orders[oid]
        return st == status and start <= day < end

    def revenue_by(key: Callable[[int], str], start: date, end: date) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for oid, pid, qty, price in data.items:
            if in_range(oid, start, end):
                totals[key(pid)] += qty * price
        return {k: round(v, 2) for k, v in totals.items()}

    by_product = revenue_by(lambda pid: data.products[pid][0], last_start, last_end)
    ranked = sorted(by_product.items(), key=lambda kv: kv[1], reverse=True)
    top3 = ranked[:3]
    by_category = revenue_by(lambda pid: data.products[pid][1], last_start, last_end)
    best_category = max(by_category.items(), key=lambda kv: kv[1])
    this_month_revenue = round(sum(revenue_by(lambda _: "all", this_start, this_end).values()), 2)
    countries = Counter(data.customers.values())
    statuses_last = Counter(
        st for _, day, st in data.orders.values() if last_start <= day < last_end
    )
    statuses_all = Counter(st for _, _, st in data.orders.values())
    software = [p for p in data.products.values() if p[1] == "Software"]
    accessories = [p[2] for p in data.products.values() if p[1] == "Accessories"]
    top_name = top3[0][0]
    units_top = sum(
        qty
        for oid, pid, qty, _ in data.items
        if data.products[pid][0] == top_name and in_range(oid, last_start, last_end)
    )
    price_of = {name: price for name, _, price in data.products.values()}
    return [
        Question(
            "Which 3 products had the highest revenue last month, and what was their total "
            "revenue?",
            Expected(
                names=tuple(n for n, _ in top3),
                numbers=(round(sum(v for _, v in top3), 2),),
                alternatives=(tuple(v for _, v in top3),),
            ),
        ),
        Question(
            "How many completed orders were there last month?",
            Expected(numbers=(statuses_last["completed"],)),
        ),
        Question(
            "How many orders were cancelled last month?",
            Expected(numbers=(statuses_last["cancelled"],)),
        ),
        Question("How many customers are there?", Expected(numbers=(len(data.customers),))),
        Question(
            "How many products are in the Software category?",
            Expected(numbers=(len(software),)),
        ),
        Question(
            "What was the total revenue last month?",
            Expected(numbers=(round(sum(by_product.values()), 2),)),
        ),
        Question(
            "What was the total revenue this month so far?",
            Expected(numbers=(this_month_revenue,)),
        ),
        Question("Which product had the highest revenue last month?", Expected(names=(top_name,))),
        Question(
            "Which product category had the highest revenue last month?",
            Expected(names=(best_category[0],)),
        ),
        Question(
            "Which country code has the most customers?",
            Expected(names=(countries.most_common(1)[0][0],)),
        ),
        Question(
            "How many customers are from the country DE?", Expected(numbers=(countries["DE"],))
        ),
        Question(
            "What is the list price (unit_price) of the product 'Laptop Basic'?",
            Expected(numbers=(price_of["Laptop Basic"],)),
        ),
        Question(
            "How many orders have the status refunded in total?",
            Expected(numbers=(statuses_all["refunded"],)),
        ),
        Question(
            "How many orders have the status pending in total?",
            Expected(numbers=(statuses_all["pending"],)),
        ),
        Question(
            "What is the average list price of the products in the Accessories category, "
            "rounded to 2 decimals?",
            Expected(numbers=(round(sum(accessories) / len(accessories), 2),)),
        ),
        Question(
            f"How many units of '{top_name}' were sold in completed orders last month?",
            Expected(numbers=(units_top,)),
        ),
        Question(
            f"What was the revenue of '{top_name}' last month?",
            Expected(numbers=(by_product[top_name],)),
        ),
        Question("What is 17.5% of 2480?", Expected(numbers=(434,))),
        Question("What is (1234 + 5678) * 3?", Expected(numbers=(20736,))),
        Question("What is the square root of 1764?", Expected(numbers=(42,))),
        Question("What is 2 to the power of 20?", Expected(numbers=(1048576,))),
        Question("What is 98765 divided by 5?", Expected(numbers=(19753,))),
    ]
