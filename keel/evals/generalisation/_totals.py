"""Templates of the count, sum and average kinds: one number over a filtered slice of rows."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

from keel.evals.generalisation._data import _Data
from keel.evals.generalisation._templates import (
    _STATUSES,
    _categories,
    _countries,
    _Instance,
    _months,
    _num,
    _period,
    _r2,
    _template,
)
from keel.evals.generalisation.questions import Trap

# --- count -------------------------------------------------------------------------------------


@_template("count", "customers_country", 4)
def _t_customers_country(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    by = Counter(c for _, c, _ in d.customers.values())
    for cc in rng.sample(_countries(d), k=len(by)):
        yield f"How many customers are from the country {cc}?", _num(by[cc], 0), {"country": cc}


@_template("count", "products_category", 3)
def _t_products_category(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    by = Counter(c for _, c, _ in d.products.values())
    for cat in rng.sample(_categories(d), k=len(by)):
        yield f"How many products are in the {cat} category?", _num(by[cat], 0), {"category": cat}


@_template("count", "orders_status_month", 5)
def _t_orders_status_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        status = rng.choice(_STATUSES)
        n = len(d.orders_in(m.start, m.end, status))
        every = len(d.orders_in(m.start, m.end))
        text = f"How many {status} orders were there {m.text}?"
        yield (
            text,
            _num(n, 0, Trap("ignored the status", (every,))),
            {**_period(m), "status": status},
        )


@_template("count", "signups_month", 3)
def _t_signups_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng, range(1, 17)):
        n = sum(1 for _, _, created in d.customers.values() if m.start <= created < m.end)
        if n:
            text = f"How many customers signed up (customers.created_at) {m.text}?"
            yield text, _num(n, 0), _period(m)


# --- sum ---------------------------------------------------------------------------------------


@_template("sum", "revenue_month", 4)
def _t_revenue_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        revenue = d.value(d.orders_in(m.start, m.end, "completed"))["all"]
        every = d.value(d.orders_in(m.start, m.end))["all"]
        trap = Trap("ignored the revenue rule", (_r2(every),))
        yield f"What was the total revenue {m.text}?", _num(revenue, 2, trap), _period(m)


@_template("sum", "units_product_month", 4)
def _t_units_product_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        done = d.orders_in(m.start, m.end, "completed")
        every = d.orders_in(m.start, m.end)
        units: Counter = Counter()
        all_units: Counter = Counter()
        for oid, pid, qty, _ in d.items:
            if oid in every:
                all_units[pid] += qty
                if oid in done:
                    units[pid] += qty
        sold = sorted(p for p in units if units[p] != all_units[p]) or sorted(units)
        if not sold:
            continue
        pid = rng.choice(sold)
        name = d.products[pid][0]
        text = f"How many units of '{name}' were sold in completed orders {m.text}?"
        trap = Trap("ignored the status", (all_units[pid],))
        yield text, _num(units[pid], 0, trap), {**_period(m), "product": name}


@_template("sum", "revenue_category_month", 4)
def _t_revenue_category_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        cat = rng.choice(_categories(d))
        by = d.value(d.orders_in(m.start, m.end, "completed"), lambda _, p: d.products[p][1])
        text = f"What was the revenue of the {cat} category {m.text}?"
        yield text, _num(by[cat]), {**_period(m), "category": cat}


# --- average -----------------------------------------------------------------------------------


@_template("average", "avg_price_category", 3)
def _t_avg_price_category(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for cat in rng.sample(_categories(d), k=len(_categories(d))):
        prices = [p for _, c, p in d.products.values() if c == cat]
        text = f"What is the average list price of the products in the {cat} category?"
        yield text, _num(sum(prices) / len(prices)), {"category": cat}


@_template("average", "avg_order_value_month", 4)
def _t_avg_order_value_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        done = d.orders_in(m.start, m.end, "completed")
        text = (
            "What was the average order value (revenue per completed order) of the orders "
            f"placed {m.text}?"
        )
        yield text, _num(d.value(done)["all"] / len(done)), _period(m)


@_template("average", "avg_quantity_product", 3)
def _t_avg_quantity_product(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    done = {oid for oid, (_, _, st) in d.orders.items() if st == "completed"}
    for pid in rng.sample(sorted(d.products), k=len(d.products)):
        qty = [q for oid, p, q, _ in d.items if p == pid and oid in done]
        if len(qty) < 5:
            continue
        name = d.products[pid][0]
        text = (
            f"On average, how many units of '{name}' does an order line of a completed order "
            "hold (all time)?"
        )
        yield text, _num(sum(qty) / len(qty)), {"product": name}


@_template("average", "avg_orders_per_day_month", 2)
def _t_avg_orders_per_day_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        days = (m.end - m.start).days
        n = len(d.orders_in(m.start, m.end))
        text = f"How many orders, whatever their status, were placed per day on average {m.text}?"
        yield text, _num(n / days), _period(m)
