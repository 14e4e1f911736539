"""The generalisation eval: ≥ 150 questions from templates over the sample database.

Why: the 22 questions of `bench/eval_questions.py` are the ones the prompts were tuned on,
so they cannot say whether the agent generalises. Here each template is filled with
parameters drawn by a seeded RNG from the data itself (months, products, countries,
statuses, thresholds), and each truth is computed in plain Python from raw rows (trivial
SELECTs, then filtering, grouping and ranking in Python), never from SQL an agent would write.
Instances whose answer would be ambiguous (near-ties in a ranking) are skipped, so every
question has exactly one right answer; customers are named by email, since names repeat.

Dates are relative to the database's `generated_on` day (`keel.tools.sample_db`), which is the
"today" of `date('now')` when the agent runs on the same day. Question ids
(`kind.template.n`) do not depend on the day, and the halves are fixed per template slot
(`split` over every slot, stratified by kind): both halves hold every kind, the texts follow
the day, the held-back set does not. Tune only on the tuning half.

`check` reads a reply as a person would skim it: the expected numbers (to the precision the
reply writes them), the expected names (in order where it matters), or a yes/no stance (a
leading yes/no, else negative and then positive wording). It says what kind of miss a wrong
reply is, including known traps (the completed-only revenue where all orders were asked,
the opposite extreme).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FAILURE_KINDS",
    "HALVES",
    "KINDS",
    "Expected",
    "GenQuestion",
    "Half",
    "Trap",
    "Verdict",
    "check",
    "generate",
    "split",
    "stance",
]

Half = Literal["tuning", "held-back"]
HALVES: tuple[Half, ...] = ("tuning", "held-back")
Check = Literal["number", "names", "names+number", "yes_no"]

KINDS = (
    "count",
    "sum",
    "average",
    "top_n",
    "extremes",
    "ratio",
    "date_range",
    "join",
    "all_status",
    "exists",
    "negation",
    "comparison",
    "arithmetic",
)
"""Question kinds; each half holds questions of every kind."""

MONEY_GAP = 1.0
"""Smallest difference between a ranked answer and its neighbour (else the instance is skipped)."""


@dataclass(frozen=True)
class Trap:
    """A known wrong answer and what producing it means (e.g. the completed-only revenue)."""

    label: str
    numbers: tuple[float, ...] = ()
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expected:
    check: Check
    numbers: tuple[float, ...] = ()
    tolerance: float = 0.01
    """Absolute; a reply's number may also differ by half a unit of its last written digit."""
    names: tuple[tuple[str, ...], ...] = ()
    """Each slot: the acceptable spellings of one name the reply must contain."""
    ordered: bool = False
    yes: bool | None = None
    traps: tuple[Trap, ...] = ()


@dataclass(frozen=True)
class GenQuestion:
    id: str
    kind: str
    template: str
    text: str
    expected: Expected
    half: Half
    params: dict[str, str | int | float] = field(default_factory=dict, hash=False)
    """What the template was filled with (ISO dates for periods): lets a test re-ask in SQL."""


# ---------------------------------------------------------------------------------------------
# Checking replies


_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_NEGATIVE = re.compile(
    r"\b(no|none|not|never|neither|nobody|nothing|fewer|less|lower|cannot|zero)\b|n't\b"
    r"|(?<![\d.,])0(?![\d.,])"
)
_POSITIVE = re.compile(
    r"\b(yes|there (?:is|are|was|were)|did|does|has|have|had|more|higher|found|exists?|some"
    r"|indeed|true|correct)\b"
)
_DATE = re.compile(r"\b\d{4}-\d\d(?:-\d\d)?\b")
"""ISO dates and months in a reply are not answers (their parts would pass for numbers)."""


def numbers_in(text: str) -> list[tuple[float, float]]:
    """Each number written in `text`, with half a unit of its last written digit."""
    found = []
    for literal in _NUMBER.findall(_DATE.sub(" ", text)):
        plain = literal.replace(",", "")
        decimals = len(plain.partition(".")[2])
        found.append((float(plain), 0.5 * 10.0**-decimals + 1e-9))
    return found


def _has_number(found: list[tuple[float, float]], wanted: float, tolerance: float) -> bool:
    return any(abs(v - wanted) <= max(tolerance, written) for v, written in found)


def _position(reply: str, spellings: tuple[str, ...]) -> int:
    """Where the first spelling occurs as whole words: case-blind, except for codes ("US")."""
    hits = []
    for spelling in spellings:
        code = spelling.isupper() and len(spelling) <= 3
        pattern = rf"(?<!\w){re.escape(spelling)}(?!\w)"
        found = re.search(pattern, reply, 0 if code else re.IGNORECASE)
        if found:
            hits.append(found.start())
    return min(hits) if hits else -1


def stance(reply: str) -> bool | None:
    """Yes (True), no (False) or no stance, from a leading yes/no or else the wording."""
    lowered = reply.strip().lower()
    first = re.match(r"\W*(\w+)", lowered)
    if first and first.group(1) in ("yes", "no"):
        return first.group(1) == "yes"
    if _NEGATIVE.search(lowered):
        return False
    if _POSITIVE.search(lowered):
        return True
    return None


@dataclass(frozen=True)
class Verdict:
    correct: bool
    failure: str | None = None
    """Why a reply is wrong: one of `FAILURE_KINDS` (None when correct)."""


FAILURE_KINDS = (
    "wrong number",
    "no number",
    "wrong row/name",
    "wrong order",
    "states the opposite",
    "no yes/no",
    "no answer",
)
"""What `check` says about a reply; a trap's label replaces the first three when it matches."""


def check(reply: str, expected: Expected) -> Verdict:
    """Whether `reply` answers right, and if not, the kind of miss."""
    if not reply.strip():
        return Verdict(False, "no answer")
    found = numbers_in(reply)
    if expected.check == "yes_no":
        said = stance(reply)
        if said is None:
            return Verdict(False, "no yes/no")
        return Verdict(True) if said == expected.yes else Verdict(False, "states the opposite")
    failure: str | None = None
    if expected.check in ("names", "names+number"):
        positions = [_position(reply, slot) for slot in expected.names]
        if any(p < 0 for p in positions):
            failure = "wrong row/name"
        elif expected.ordered and positions != sorted(positions):
            failure = "wrong order"
    if (
        failure is None
        and expected.check in ("number", "names+number")
        and not all(_has_number(found, w, expected.tolerance) for w in expected.numbers)
    ):
        failure = "wrong number" if found else "no number"
    if failure is None:
        return Verdict(True)
    for trap in expected.traps:
        if all(_has_number(found, w, expected.tolerance) for w in trap.numbers) and all(
            _position(reply, (n,)) >= 0 for n in trap.names
        ):
            return Verdict(False, trap.label)
    return Verdict(False, failure)


# ---------------------------------------------------------------------------------------------
# The split


def split(ids: Iterable[tuple[str, str]]) -> dict[str, Half]:
    """`(kind, id)` pairs → half: within each kind, order by SHA-256 of the id and alternate.

    Both halves get every kind (of two questions or more); the halves of a kind, and the
    halves overall, differ in size by one at most.
    """
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, qid in ids:
        by_kind[kind].append(qid)
    halves: dict[str, Half] = {}
    turn = 0  # carried from kind to kind, so the halves differ in size by one at most
    for _, kind_ids in sorted(by_kind.items()):
        for qid in sorted(kind_ids, key=lambda qid: hashlib.sha256(qid.encode()).hexdigest()):
            halves[qid] = HALVES[turn % 2]
            turn += 1
    return halves


# ---------------------------------------------------------------------------------------------
# The data, read with trivial SELECTs


@dataclass
class _Data:
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


# ---------------------------------------------------------------------------------------------
# Templates


@dataclass(frozen=True)
class _Month:
    start: date
    end: date
    text: str


def _month(today: date, back: int) -> _Month:
    index = today.year * 12 + today.month - 1 - back
    start = date(index // 12, index % 12 + 1, 1)
    following = index + 1
    end = date(following // 12, following % 12 + 1, 1)
    text = "last month" if back == 1 else f"in {start:%B %Y}"
    return _Month(start, end, text)


def _month_spellings(m: _Month) -> tuple[str, ...]:
    return (
        f"{m.start:%B %Y}",
        f"{m.start:%b %Y}",
        f"{m.start:%Y-%m}",
        f"{m.start:%B} {m.start.year}",
    )


def _r2(x: float) -> float:
    return round(x + 0.0, 2)


def _ranked(totals: dict[Any, float]) -> list[tuple[Any, float]]:
    """Largest first; ties by key, so the order is deterministic."""
    return sorted(totals.items(), key=lambda kv: (-kv[1], str(kv[0])))


def _separated(values: list[float], n: int, gap: float = MONEY_GAP) -> bool:
    """The first n+1 of the descending `values` differ pairwise by `gap` (or n is all)."""
    head = values[: n + 1]
    return all(a - b >= gap for a, b in itertools.pairwise(head))


_Instance = tuple[str, Expected, dict[str, str | int | float]]
_Template = Callable[[_Data, random.Random], Iterator[_Instance]]
_TEMPLATES: list[tuple[str, str, int, _Template]] = []


def _template(kind: str, name: str, count: int) -> Callable[[_Template], _Template]:
    def register(fn: _Template) -> _Template:
        _TEMPLATES.append((kind, name, count, fn))
        return fn

    return register


def _period(m: _Month) -> dict[str, str | int | float]:
    return {"start": m.start.isoformat(), "end": m.end.isoformat()}


def _months(d: _Data, rng: random.Random, backs: Iterable[int] = range(1, 13)) -> list[_Month]:
    pool = list(backs)
    rng.shuffle(pool)
    return [_month(d.today, b) for b in pool]


_STATUSES = ("completed", "cancelled", "refunded", "pending")


def _countries(d: _Data) -> list[str]:
    return sorted({c for _, c, _ in d.customers.values()})


def _categories(d: _Data) -> list[str]:
    return sorted({c for _, c, _ in d.products.values()})


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


def _num(value: float, decimals: int = 2, *traps: Trap, tolerance: float = 0.01) -> Expected:
    truth = round(value, decimals) if decimals else round(value)
    kept = tuple(t for t in traps if all(abs(n - truth) > 1 for n in t.numbers))
    return Expected("number", numbers=(truth,), tolerance=tolerance, traps=kept)


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


# --- top_n -------------------------------------------------------------------------------------


def _names(*names: str, ordered: bool = True, traps: tuple[Trap, ...] = ()) -> Expected:
    return Expected("names", names=tuple((n,) for n in names), ordered=ordered, traps=traps)


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


def _by_price(d: _Data, cat: str | None) -> list[tuple[str, float]]:
    return sorted(
        ((n, p) for n, c, p in d.products.values() if cat is None or c == cat), key=lambda t: t[1]
    )


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


def _pct(value: float) -> Expected:
    return Expected("number", numbers=(round(value, 2),), tolerance=0.1)


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


# --- exists (yes/no, both truths) --------------------------------------------------------------


def _yes_no(truth: bool) -> Expected:
    return Expected("yes_no", yes=truth)


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


# ---------------------------------------------------------------------------------------------


def generate(db: Path, *, seed: int = 21) -> list[GenQuestion]:
    """Every question over `db` (a sample database), with truths; same db + seed → same set."""
    data = _load(db)
    made: list[tuple[str, str, str, str, Expected, dict[str, str | int | float]]] = []
    for kind, name, count, template in _TEMPLATES:
        rng = random.Random(f"{seed}:{kind}.{name}")
        seen: set[str] = set()
        for text, expected, params in template(data, rng):
            if text in seen:
                continue
            seen.add(text)
            made.append((f"{kind}.{name}.{len(seen)}", kind, name, text, expected, params))
            if len(seen) == count:
                break
    planned = (
        (kind, f"{kind}.{name}.{n}") for kind, name, count, _ in _TEMPLATES
        for n in range(1, count + 1)
    )  # fmt: skip
    halves = split(planned)  # over every slot, so a short template moves no other question
    return [
        GenQuestion(qid, kind, name, text, expected, halves[qid], params)
        for qid, kind, name, text, expected, params in made
    ]
