"""Templates of the top_n, extremes and ratio kinds: names in rank order, shares of a total.

Rankings are asked only where the ranked answer stands clear of its neighbour (`MONEY_GAP`),
and the opposite extreme is a named trap.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

from keel.evals.generalisation._data import _Data
from keel.evals.generalisation._templates import (
    MONEY_GAP,
    _by_price,
    _categories,
    _countries,
    _Instance,
    _month,
    _month_spellings,
    _months,
    _names,
    _num,
    _pct,
    _period,
    _ranked,
    _separated,
    _template,
)
from keel.evals.generalisation.questions import Expected, Trap

# --- top_n -------------------------------------------------------------------------------------


@_template("top_n", "top_products_revenue", 5)
def _t_top_products_revenue(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        n = rng.randint(2, 5)
        by = d.value(d.orders_in(m.start, m.end, "completed"), lambda _, p: d.products[p][0])
        ranked = _ranked(by)
        if not _separated([v for _, v in ranked], n):
            continue
        text = f"Which {n} products had the highest revenue {m.text}? List them from the highest."
        yield text, _names(*(k for k, _ in ranked[:n])), {**_period(m), "n": n}


@_template("top_n", "top_customers_spend", 4)
def _t_top_customers_spend(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    name_count = Counter(name for name, _, _ in d.customers.values())
    for m in _months(d, rng):
        n = rng.randint(2, 3)
        by = d.value(d.orders_in(m.start, m.end, "completed"), lambda o, _: d.orders[o][0])
        ranked = _ranked(by)
        if not _separated([v for _, v in ranked], n):
            continue
        slots = tuple(
            (
                d.emails[cid],
                *((d.customers[cid][0],) if name_count[d.customers[cid][0]] == 1 else ()),
            )
            for cid, _ in ranked[:n]
        )  # a name shared by two customers does not say which one
        text = (
            f"Which {n} customers spent the most (revenue of their completed orders) {m.text}? "
            "Give their email addresses, from the highest."
        )
        yield text, Expected("names", names=slots, ordered=True), {**_period(m), "n": n}


@_template("top_n", "top_categories_units", 3)
def _t_top_categories_units(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        done = d.orders_in(m.start, m.end, "completed")
        units: Counter = Counter()
        for oid, pid, qty, _ in d.items:
            if oid in done:
                units[d.products[pid][1]] += qty
        ranked = units.most_common()
        if not _separated([v for _, v in ranked], 2, gap=1):
            continue
        text = (
            f"Which 2 product categories sold the most units in completed orders {m.text}? "
            "Most first."
        )
        yield text, _names(*(k for k, _ in ranked[:2])), {**_period(m), "n": 2}


# --- extremes ----------------------------------------------------------------------------------


@_template("extremes", "cheapest_category", 4)
def _t_cheapest_category(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for cat in rng.sample(_categories(d), k=len(_categories(d))):
        ranked = _by_price(d, cat)
        trap = Trap("named the opposite extreme", names=(ranked[-1][0],))
        text = f"What is the cheapest product in the {cat} category?"
        yield text, _names(ranked[0][0], traps=(trap,)), {"category": cat, "order": "asc"}


@_template("extremes", "dearest_category_price", 4)
def _t_dearest_category_price(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for cat in rng.sample(_categories(d), k=len(_categories(d))):
        ranked = _by_price(d, cat)
        name, price = ranked[-1]
        trap = Trap("named the opposite extreme", names=(ranked[0][0],))
        expected = Expected(
            "names+number", numbers=(price,), names=((name,),), traps=(trap,), tolerance=0.01
        )
        text = f"Which is the most expensive product in the {cat} category, and what is its price?"
        yield text, expected, {"category": cat, "order": "desc"}


@_template("extremes", "overall_extreme", 2)
def _t_overall_extreme(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    ranked = _by_price(d, None)
    cheap = Trap("named the opposite extreme", names=(ranked[-1][0],))
    dear = Trap("named the opposite extreme", names=(ranked[0][0],))
    yield (
        "Which product has the lowest list price of all?",
        _names(ranked[0][0], traps=(cheap,)),
        {"order": "asc"},
    )
    yield (
        "Which product is the most expensive one we sell?",
        _names(ranked[-1][0], traps=(dear,)),
        {"order": "desc"},
    )


@_template("extremes", "lowest_revenue_month", 3)
def _t_lowest_revenue_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        by = d.value(d.orders_in(m.start, m.end, "completed"), lambda _, p: d.products[p][0])
        ranked = sorted(by.items(), key=lambda kv: kv[1])
        if len(ranked) < 2 or ranked[1][1] - ranked[0][1] < MONEY_GAP:
            continue
        trap = Trap("named the opposite extreme", names=(ranked[-1][0],))
        text = f"Which product had the lowest revenue {m.text}, among the products that sold?"
        yield text, _names(ranked[0][0], traps=(trap,)), _period(m)


@_template("extremes", "best_month", 2)
def _t_best_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for span in rng.sample([6, 12], k=2):
        months = [_month(d.today, b) for b in range(1, span + 1)]
        revenue = {m: d.value(d.orders_in(m.start, m.end, "completed"))["all"] for m in months}
        ranked = sorted(months, key=lambda m: revenue[m], reverse=True)
        if revenue[ranked[0]] - revenue[ranked[1]] < MONEY_GAP:
            continue
        text = f"Of the last {span} full calendar months, which one had the highest revenue?"
        expected = Expected("names", names=(_month_spellings(ranked[0]),))
        yield text, expected, {"months": span}


# --- ratio -------------------------------------------------------------------------------------


@_template("ratio", "pct_status_month", 4)
def _t_pct_status_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        status = rng.choice(("cancelled", "refunded", "completed"))
        every = d.orders_in(m.start, m.end)
        share = 100 * len(d.orders_in(m.start, m.end, status)) / len(every)
        text = f"What percentage of the orders placed {m.text} were {status}?"
        yield text, _pct(share), {**_period(m), "status": status}


@_template("ratio", "share_category_month", 4)
def _t_share_category_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        cat = rng.choice(_categories(d))
        by = d.value(d.orders_in(m.start, m.end, "completed"), lambda _, p: d.products[p][1])
        text = f"What share of the revenue {m.text} came from the {cat} category, in percent?"
        yield text, _pct(100 * by[cat] / sum(by.values())), {**_period(m), "category": cat}


@_template("ratio", "pct_customers_country", 3)
def _t_pct_customers_country(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    by = Counter(c for _, c, _ in d.customers.values())
    for cc in rng.sample(_countries(d), k=len(by)):
        text = f"What percentage of our customers are from {cc}?"
        yield text, _pct(100 * by[cc] / len(d.customers)), {"country": cc}


@_template("ratio", "times_product_month", 2)
def _t_times_product_month(d: _Data, rng: random.Random) -> Iterator[_Instance]:
    for m in _months(d, rng):
        by = d.value(d.orders_in(m.start, m.end, "completed"), lambda _, p: d.products[p][0])
        ranked = _ranked(by)
        (a, va), (b, vb) = ranked[0], ranked[rng.randint(3, 8)]
        text = (
            f"How many times as much revenue as '{b}' did '{a}' make {m.text}? Round to 2 decimals."
        )
        yield text, _num(va / vb, tolerance=0.01), {**_period(m), "a": a, "b": b}
