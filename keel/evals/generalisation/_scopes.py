"""Templates of the date_range, join and all_status kinds: getting the rows in scope right.

Days relative to the database's today, facts across tables, and questions about every order
whatever its status, where applying the completed-only revenue rule is the named trap.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, timedelta

from keel.evals.generalisation._data import _Data
from keel.evals.generalisation._templates import (
    _countries,
    _Instance,
    _months,
    _names,
    _num,
    _period,
    _r2,
    _ranked,
    _separated,
    _template,
)
from keel.evals.generalisation.questions import Trap

# --- date_range --------------------------------------------------------------------------------


def _since(d: _Data, days: int) -> date:
    """The first day of the last `days` days, today included."""
    return d.today - timedelta(days=days - 1)


@_template("date_range", "orders_last_days", 3)
def _t_orders_last_days(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for n in rng.sample([7, 14, 30, 60], k=4):
        count = len(d.orders_in(_since(d, n), d.today + timedelta(days=1)))
        text = (
            f"How many orders were placed in the last {n} days, today included, "
            "whatever their status?"
        )
        yield text, _num(count, 0), {"start": _since(d, n).isoformat(), "end": _after(d)}


def _after(d: _Data) -> str:
    return (d.today + timedelta(days=1)).isoformat()


@_template("date_range", "revenue_last_days", 3)
def _t_revenue_last_days(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for n in rng.sample([7, 10, 30, 90], k=4):
        revenue = d.value(d.orders_in(_since(d, n), d.today + timedelta(days=1), "completed"))
        text = f"What was the revenue of the last {n} days, including today?"
        yield text, _num(revenue["all"]), {"start": _since(d, n).isoformat(), "end": _after(d)}


@_template("date_range", "single_days", 3)
def _t_single_days(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    yesterday = d.today - timedelta(days=1)
    n = len(d.orders_in(yesterday, d.today))
    yield (
        "How many orders, of any status, were placed yesterday?",
        _num(n, 0),
        {
            "start": yesterday.isoformat(),
            "end": d.today.isoformat(),
            "measure": "orders",
        },
    )
    n = len(d.orders_in(d.today, d.today + timedelta(days=1)))
    yield (
        "How many orders, of any status, have been placed today?",
        _num(n, 0),
        {
            "start": d.today.isoformat(),
            "end": _after(d),
            "measure": "orders",
        },
    )
    first = d.today.replace(day=1)
    revenue = d.value(d.orders_in(first, d.today + timedelta(days=1), "completed"))["all"]
    yield (
        "What is the revenue of this month so far?",
        _num(revenue),
        {
            "start": first.isoformat(),
            "end": _after(d),
            "measure": "revenue",
        },
    )


@_template("date_range", "year_to_date", 1)
def _t_year_to_date(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    first = d.today.replace(month=1, day=1)
    n = len(d.orders_in(first, d.today + timedelta(days=1), "completed"))
    yield (
        "How many completed orders have been placed so far this year?",
        _num(n, 0),
        {
            "start": first.isoformat(),
            "end": _after(d),
        },
    )


@_template("date_range", "orders_between", 3)
def _t_orders_between(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    while True:
        first = d.today - timedelta(days=rng.randint(20, 400))
        last = first + timedelta(days=rng.randint(3, 20))
        n = len(d.orders_in(first, last + timedelta(days=1), "completed"))
        text = f"How many completed orders were placed from {first} to {last}, both days included?"
        yield (
            text,
            _num(n, 0),
            {"start": first.isoformat(), "end": (last + timedelta(days=1)).isoformat()},
        )


# --- join --------------------------------------------------------------------------------------


@_template("join", "orders_country_month", 4)
def _t_orders_country_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        cc = rng.choice(_countries(d))
        n = sum(
            1
            for o in d.orders_in(m.start, m.end, "completed")
            if d.customers[d.orders[o][0]][1] == cc
        )
        text = f"How many completed orders did customers from {cc} place {m.text}?"
        yield text, _num(n, 0), {**_period(m), "country": cc}


@_template("join", "revenue_country_month", 3)
def _t_revenue_country_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        cc = rng.choice(_countries(d))
        by = d.value(
            d.orders_in(m.start, m.end, "completed"), lambda o, _: d.customers[d.orders[o][0]][1]
        )
        text = f"What was the revenue from customers in {cc} {m.text}?"
        yield text, _num(by[cc]), {**_period(m), "country": cc}


@_template("join", "buyers_product_month", 3)
def _t_buyers_product_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        done = d.orders_in(m.start, m.end, "completed")
        buyers: dict[int, set[int]] = defaultdict(set)
        for oid, pid, _, _ in d.items:
            if oid in done:
                buyers[pid].add(d.orders[oid][0])
        pid = rng.choice(sorted(buyers))
        name = d.products[pid][0]
        text = f"How many different customers bought '{name}' in completed orders {m.text}?"
        yield text, _num(len(buyers[pid]), 0), {**_period(m), "product": name}


@_template("join", "top_country_month", 3)
def _t_top_country_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        by = d.value(
            d.orders_in(m.start, m.end, "completed"), lambda o, _: d.customers[d.orders[o][0]][1]
        )
        ranked = _ranked(by)
        if not _separated([v for _, v in ranked], 1):
            continue
        text = f"Customers of which country (code) generated the most revenue {m.text}?"
        yield text, _names(ranked[0][0]), _period(m)


# --- all_status (the revenue rule does not apply) ------------------------------------------------


@_template("all_status", "value_all_month", 4)
def _t_value_all_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        every = d.value(d.orders_in(m.start, m.end))["all"]
        revenue = d.value(d.orders_in(m.start, m.end, "completed"))["all"]
        text = (
            f"What was the total value (quantity × unit price of every item) of all orders "
            f"placed {m.text}, whatever their status?"
        )
        trap = Trap("applied the completed-only rule", (_r2(revenue),))
        yield text, _num(every, 2, trap), _period(m)


@_template("all_status", "orders_all_month", 4)
def _t_orders_all_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        every = len(d.orders_in(m.start, m.end))
        done = len(d.orders_in(m.start, m.end, "completed"))
        text = f"How many orders were placed {m.text}, whatever their status?"
        yield text, _num(every, 0, Trap("applied the completed-only rule", (done,))), _period(m)


@_template("all_status", "value_status_month", 4)
def _t_value_status_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        status = rng.choice(("cancelled", "refunded"))
        value = d.value(d.orders_in(m.start, m.end, status))["all"]
        revenue = d.value(d.orders_in(m.start, m.end, "completed"))["all"]
        if not value:
            continue
        text = (
            f"What was the total value (quantity × unit price of their items) of the {status} "
            f"orders {m.text}?"
        )
        trap = Trap("applied the completed-only rule", (_r2(revenue),))
        yield text, _num(value, 2, trap), {**_period(m), "status": status}


@_template("all_status", "units_all_product", 3)
def _t_units_all_product(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        every = d.orders_in(m.start, m.end)
        done = d.orders_in(m.start, m.end, "completed")
        units: Counter = Counter()
        done_units: Counter = Counter()
        for oid, pid, qty, _ in d.items:
            if oid in every:
                units[pid] += qty
                if oid in done:
                    done_units[pid] += qty
        differing = sorted(p for p in units if units[p] != done_units[p])
        if not differing:
            continue
        pid = rng.choice(differing)
        name = d.products[pid][0]
        text = (
            f"How many units of '{name}' were ordered {m.text}, counting every order "
            "whatever its status?"
        )
        trap = Trap("applied the completed-only rule", (done_units[pid],))
        yield text, _num(units[pid], 0, trap), {**_period(m), "product": name}
