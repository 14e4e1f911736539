"""Templates of the exists, negation, comparison and arithmetic kinds.

Yes/no questions alternate their truth, so a reply that always says yes (or no) gets half;
negations count what is absent; arithmetic questions need the calculator, not the data.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

from keel.evals.generalisation._data import _Data
from keel.evals.generalisation._templates import (
    MONEY_GAP,
    _by_price,
    _categories,
    _countries,
    _Instance,
    _month,
    _months,
    _num,
    _period,
    _template,
    _yes_no,
)
from keel.evals.generalisation.questions import Trap

# --- exists (yes/no, both truths) --------------------------------------------------------------


@_template("exists", "refund_country_month", 4)
def _t_refund_country_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    want = True
    for m in _months(d, rng):
        refunded = {d.customers[d.orders[o][0]][1] for o in d.orders_in(m.start, m.end, "refunded")}
        pool = sorted(refunded) if want else sorted(set(_countries(d)) - refunded)
        if not pool:
            continue
        cc = rng.choice(pool)
        text = f"Are there any customers from {cc} who had a refunded order {m.text}?"
        yield text, _yes_no(want), {**_period(m), "country": cc}
        want = not want


@_template("exists", "price_above", 4)
def _t_price_above(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    want = True
    for cat in rng.sample(_categories(d) * 2, k=8):
        top = _by_price(d, cat)[-1][1]
        threshold = int(top) - rng.randint(5, 40) if want else int(top) + rng.randint(5, 60)
        text = (
            f"Is there any product in the {cat} category with a list price above "
            f"{threshold} dollars?"
        )
        yield text, _yes_no(want), {"category": cat, "threshold": threshold}
        want = not want


@_template("exists", "product_sold_on_day", 3)
def _t_product_sold_on_day(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    want = False
    names = sorted(n for n, _, _ in d.products.values())
    while True:
        day = d.today - timedelta(days=rng.randint(2, 300))
        done = d.orders_in(day, day + timedelta(days=1), "completed")
        sold = {d.products[p][0] for o, p, _, _ in d.items if o in done}
        pool = sorted(sold) if want else sorted(set(names) - sold)
        name = rng.choice(pool)
        text = f"Was '{name}' sold in any completed order on {day}?"
        yield text, _yes_no(want), {"start": day.isoformat(), "product": name}
        want = not want


@_template("exists", "cancel_country_month", 3)
def _t_cancel_country_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    want = False
    for m in _months(d, rng):
        cancelled = {
            d.customers[d.orders[o][0]][1] for o in d.orders_in(m.start, m.end, "cancelled")
        }
        pool = sorted(cancelled) if want else sorted(set(_countries(d)) - cancelled)
        if not pool:
            continue
        cc = rng.choice(pool)
        text = f"Did any customer from {cc} place an order {m.text} that was then cancelled?"
        yield text, _yes_no(want), {**_period(m), "country": cc}
        want = not want


# --- negation ----------------------------------------------------------------------------------


def _never_had(d: _Data, status: str) -> set[int]:
    """Customers with no order of `status`, ever."""
    had = {cid for cid, _, st in d.orders.values() if st == status}
    return set(d.customers) - had


@_template("negation", "never_had_status", 3)
def _t_never_had_status(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for status in rng.sample(("cancelled", "refunded", "pending"), k=3):
        if rng.random() < 0.5:
            n = len(_never_had(d, status))
            text = f"How many customers have never had a {status} order?"
            yield text, _num(n, 0), {"status": status}
        else:
            cc = rng.choice(_countries(d))
            n = sum(1 for c in _never_had(d, status) if d.customers[c][1] == cc)
            text = f"How many customers from {cc} have never had a {status} order?"
            yield text, _num(n, 0), {"status": status, "country": cc}


@_template("negation", "products_without_status_month", 3)
def _t_products_without_status_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        status = rng.choice(("cancelled", "refunded"))
        chosen = d.orders_in(m.start, m.end, status)
        hit = {p for o, p, _, _ in d.items if o in chosen}
        text = f"How many of our products did not appear in any {status} order {m.text}?"
        yield text, _num(len(d.products) - len(hit), 0), {**_period(m), "status": status}


@_template("negation", "not_completed_month", 3)
def _t_not_completed_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        every = d.orders_in(m.start, m.end)
        n = len(every - d.orders_in(m.start, m.end, "completed"))
        cancelled = len(d.orders_in(m.start, m.end, "cancelled"))
        text = f"How many orders placed {m.text} were not completed?"
        yield text, _num(n, 0, Trap("counted one status only", (cancelled,))), _period(m)


@_template("negation", "idle_country_month", 3)
def _t_idle_country_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        cc = rng.choice(_countries(d))
        active = {d.orders[o][0] for o in d.orders_in(m.start, m.end)}
        n = sum(
            1 for c, (_, country, _) in d.customers.items() if country == cc and c not in active
        )
        text = f"How many customers from {cc} placed no order at all {m.text}?"
        yield text, _num(n, 0), {**_period(m), "country": cc}


# --- comparison (yes/no) -----------------------------------------------------------------------


@_template("comparison", "product_vs_product", 4)
def _t_product_vs_product(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    want = True
    for m in _months(d, rng):
        by = d.value(d.orders_in(m.start, m.end, "completed"), lambda _, p: d.products[p][0])
        a, b = rng.sample(sorted(by), k=2)
        if abs(by[a] - by[b]) < MONEY_GAP:
            continue
        if (by[a] > by[b]) != want:
            a, b = b, a
        text = f"Did '{a}' make more revenue than '{b}' {m.text}?"
        yield text, _yes_no(want), {**_period(m), "a": a, "b": b}
        want = not want


@_template("comparison", "month_vs_month", 4)
def _t_month_vs_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    want = False
    while True:
        b1, b2 = rng.sample(range(2, 18), k=2)
        m1, m2 = _month(d.today, b1), _month(d.today, b2)
        r1 = d.value(d.orders_in(m1.start, m1.end, "completed"))["all"]
        r2 = d.value(d.orders_in(m2.start, m2.end, "completed"))["all"]
        if abs(r1 - r2) < MONEY_GAP or (r1 > r2) != want:
            continue
        text = f"Was the revenue {m1.text} higher than {m2.text}?"
        params: dict[str, str | int | float] = {
            "start": m1.start.isoformat(),
            "end": m1.end.isoformat(),
            "start2": m2.start.isoformat(),
            "end2": m2.end.isoformat(),
        }
        yield text, _yes_no(want), params
        want = not want


@_template("comparison", "country_vs_country", 4)
def _t_country_vs_country(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    by = Counter(c for _, c, _ in d.customers.values())
    want = True
    while True:
        a, b = rng.sample(_countries(d), k=2)
        if by[a] == by[b] or (by[a] > by[b]) != want:
            continue
        text = f"Do we have more customers from {a} than from {b}?"
        yield text, _yes_no(want), {"a": a, "b": b}
        want = not want


# --- arithmetic (the calculator) ---------------------------------------------------------------


@_template("arithmetic", "percent_of", 3)
def _t_percent_of(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    while True:
        pct, x = rng.choice([5, 7.5, 12, 15, 17.5, 22, 35]), rng.randint(120, 9800)
        yield f"What is {pct}% of {x}?", _num(pct * x / 100), {}


@_template("arithmetic", "sum_times", 3)
def _t_sum_times(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    while True:
        a, b, c = rng.randint(100, 9999), rng.randint(100, 9999), rng.randint(2, 19)
        yield f"What is ({a} + {b}) * {c}?", _num((a + b) * c, 0), {}


@_template("arithmetic", "square_root", 2)
def _t_square_root(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    while True:
        n = rng.randint(13, 299)
        yield f"What is the square root of {n * n}?", _num(n, 0), {}


@_template("arithmetic", "power", 2)
def _t_power(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    while True:
        b, e = rng.choice(
            [(2, rng.randint(11, 30)), (3, rng.randint(5, 15)), (7, rng.randint(3, 9))]
        )
        yield f"What is {b} to the power of {e}?", _num(b**e, 0), {}


@_template("arithmetic", "divide", 2)
def _t_divide(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    while True:
        b = rng.choice([4, 8, 16, 25, 32, 40])
        a = rng.randint(1000, 99999)
        yield f"What is {a} divided by {b}?", _num(a / b), {}


@_template("arithmetic", "price_change", 2)
def _t_price_change(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    while True:
        p, up, down = rng.randint(50, 900), rng.choice([10, 15, 20, 25]), rng.choice([5, 10, 20])
        final = p * (1 + up / 100) * (1 - down / 100)
        text = (
            f"A price of {p} dollars rises by {up}% and then falls by {down}%. "
            "What is the final price?"
        )
        yield text, _num(final), {}
