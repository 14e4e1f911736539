"""The generalisation eval: enough questions, deterministic, a split that spans every kind,
truths that SQL agrees with, checkers that take a right answer and refuse a wrong one, and a
harness that runs and classifies (with a scripted model, which gets most of them wrong)."""

from __future__ import annotations

import math
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bench.eval_local import Asked, classify, eval_model, report, select
from keel.evals.generalisation import (
    FAILURE_KINDS,
    HALVES,
    KINDS,
    Expected,
    GenQuestion,
    Trap,
    check,
    generate,
    split,
    stance,
)
from keel.tools.sample_db import build_sample_db, ensure_sample_db
from keel.types import RunMetadata, RunResult
from tests.sales_truth import SALES_QUESTION, top_products

TODAY = date(2026, 11, 26)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sample_db(tmp_path_factory.mktemp("gen") / "sample.db", today=TODAY)


@pytest.fixture(scope="module")
def asked(db: Path) -> list[GenQuestion]:
    return generate(db)


def test_at_least_150_distinct_questions_of_every_kind(asked: list[GenQuestion]) -> None:
    assert len(asked) >= 150
    assert len({q.id for q in asked}) == len(asked)
    assert len({q.text for q in asked}) == len(asked)
    assert {q.kind for q in asked} == set(KINDS)
    assert all(q.id.startswith(f"{q.kind}.{q.template}.") for q in asked)


def test_same_database_gives_the_same_set_and_another_seed_another(
    asked: list[GenQuestion], tmp_path: Path
) -> None:
    again = generate(build_sample_db(tmp_path / "again.db", today=TODAY))
    assert again == asked
    assert [q.half for q in again] == [q.half for q in asked]
    other = generate(build_sample_db(tmp_path / "again.db", today=TODAY), seed=22)
    assert [q.text for q in other] != [q.text for q in asked]


@pytest.mark.parametrize("today", [date(2025, 1, 31), date(2026, 3, 1), date(2027, 7, 15)])
def test_ids_and_halves_hold_on_other_days(
    asked: list[GenQuestion], tmp_path: Path, today: date
) -> None:
    """The texts follow the day (months, products), the held-back set does not."""
    later = generate(build_sample_db(tmp_path / "s.db", today=today))
    assert {q.id: q.half for q in later} == {q.id: q.half for q in asked}


def test_both_halves_hold_every_kind_in_near_equal_shares(asked: list[GenQuestion]) -> None:
    per = Counter((q.kind, q.half) for q in asked)
    for kind in KINDS:
        tuning, held = per[(kind, "tuning")], per[(kind, "held-back")]
        assert tuning >= 1 and held >= 1, kind
        assert abs(tuning - held) <= 1, kind
    halves = Counter(q.half for q in asked)
    assert abs(halves["tuning"] - halves["held-back"]) <= 1


def test_split_depends_only_on_the_ids_and_alternates_within_a_kind() -> None:
    ids = [("a", f"a.t.{i}") for i in range(9)] + [("b", f"b.t.{i}") for i in range(2)]
    first = split(ids)
    assert split(reversed(ids)) == first
    assert Counter(first[qid] for kind, qid in ids if kind == "a") == {"tuning": 5, "held-back": 4}
    assert {first["b.t.0"], first["b.t.1"]} == set(HALVES)


def test_yes_no_questions_have_both_truths(asked: list[GenQuestion]) -> None:
    for kind in ("exists", "comparison"):
        truths = Counter(q.expected.yes for q in asked if q.kind == kind)
        assert truths[True] >= 3 and truths[False] >= 3, (kind, truths)


def test_rule_exception_questions_carry_the_completed_only_trap(asked: list[GenQuestion]) -> None:
    rule = [q for q in asked if q.kind == "all_status"]
    assert rule and all(
        t.label == "applied the completed-only rule" for q in rule for t in q.expected.traps
    )
    assert sum(bool(q.expected.traps) for q in rule) >= len(rule) - 1


# ---------------------------------------------------------------------------------------------
# Every database truth, again, by SQL


_ITEMS = (
    "FROM order_items oi JOIN orders o ON o.id = oi.order_id "
    "JOIN products p ON p.id = oi.product_id JOIN customers c ON c.id = o.customer_id "
)
_IN = "o.order_date >= :start AND o.order_date < :end"
_DONE = f"o.status = 'completed' AND {_IN}"
_VALUE = "SUM(oi.quantity * oi.unit_price)"


def _one(conn: sqlite3.Connection, sql: str, p: dict[str, Any]) -> Any:
    return conn.execute(sql, p).fetchone()[0]


def _col(conn: sqlite3.Connection, sql: str, p: dict[str, Any]) -> list[Any]:
    return [r[0] for r in conn.execute(sql, p)]


def _best_month(conn: sqlite3.Connection, p: dict[str, Any]) -> list[str]:
    this = TODAY.replace(day=1)
    index = this.year * 12 + this.month - 1 - int(p["months"])
    first = date(index // 12, index % 12 + 1, 1)
    return _col(
        conn,
        f"SELECT substr(o.order_date, 1, 7) m {_ITEMS} WHERE o.status = 'completed' "
        "AND o.order_date >= :a AND o.order_date < :b GROUP BY m ORDER BY " + _VALUE + " DESC "
        "LIMIT 1",
        {"a": first.isoformat(), "b": this.isoformat()},
    )


SQL: dict[str, Callable[[sqlite3.Connection, dict[str, Any]], Any]] = {
    "customers_country": lambda c, p: _one(
        c, "SELECT count(*) FROM customers WHERE country = :country", p
    ),
    "products_category": lambda c, p: _one(
        c, "SELECT count(*) FROM products WHERE category = :category", p
    ),
    "orders_status_month": lambda c, p: _one(
        c, f"SELECT count(*) FROM orders o WHERE o.status = :status AND {_IN}", p
    ),
    "signups_month": lambda c, p: _one(
        c, "SELECT count(*) FROM customers WHERE created_at >= :start AND created_at < :end", p
    ),
    "revenue_month": lambda c, p: _one(c, f"SELECT {_VALUE} {_ITEMS} WHERE {_DONE}", p),
    "units_product_month": lambda c, p: _one(
        c, f"SELECT SUM(oi.quantity) {_ITEMS} WHERE {_DONE} AND p.name = :product", p
    ),
    "revenue_category_month": lambda c, p: _one(
        c, f"SELECT {_VALUE} {_ITEMS} WHERE {_DONE} AND p.category = :category", p
    ),
    "avg_price_category": lambda c, p: _one(
        c, "SELECT AVG(unit_price) FROM products WHERE category = :category", p
    ),
    "avg_order_value_month": lambda c, p: _one(
        c, f"SELECT {_VALUE} * 1.0 / COUNT(DISTINCT o.id) {_ITEMS} WHERE {_DONE}", p
    ),
    "avg_quantity_product": lambda c, p: _one(
        c, f"SELECT AVG(oi.quantity) {_ITEMS} WHERE o.status = 'completed' AND p.name = :product", p
    ),
    "avg_orders_per_day_month": lambda c, p: _one(
        c,
        f"SELECT count(*) / (julianday(:end) - julianday(:start)) FROM orders o WHERE {_IN}",
        p,
    ),
    "top_products_revenue": lambda c, p: _col(
        c, f"SELECT p.name {_ITEMS} WHERE {_DONE} GROUP BY p.id ORDER BY {_VALUE} DESC LIMIT :n", p
    ),
    "top_customers_spend": lambda c, p: _col(
        c, f"SELECT c.email {_ITEMS} WHERE {_DONE} GROUP BY c.id ORDER BY {_VALUE} DESC LIMIT :n", p
    ),
    "top_categories_units": lambda c, p: _col(
        c,
        f"SELECT p.category {_ITEMS} WHERE {_DONE} GROUP BY p.category "
        "ORDER BY SUM(oi.quantity) DESC LIMIT :n",
        p,
    ),
    "cheapest_category": lambda c, p: _col(
        c, "SELECT name FROM products WHERE category = :category ORDER BY unit_price LIMIT 1", p
    ),
    "dearest_category_price": lambda c, p: list(
        c.execute(
            "SELECT name, unit_price FROM products WHERE category = :category "
            "ORDER BY unit_price DESC LIMIT 1",
            p,
        ).fetchone()
    ),
    "overall_extreme": lambda c, p: _col(
        c, f"SELECT name FROM products ORDER BY unit_price {p['order']} LIMIT 1", p
    ),
    "lowest_revenue_month": lambda c, p: _col(
        c, f"SELECT p.name {_ITEMS} WHERE {_DONE} GROUP BY p.id ORDER BY {_VALUE} LIMIT 1", p
    ),
    "best_month": _best_month,
    "pct_status_month": lambda c, p: _one(
        c, f"SELECT 100.0 * SUM(o.status = :status) / count(*) FROM orders o WHERE {_IN}", p
    ),
    "share_category_month": lambda c, p: _one(
        c,
        f"SELECT 100.0 * SUM(CASE WHEN p.category = :category THEN oi.quantity * oi.unit_price "
        f"END) / {_VALUE} {_ITEMS} WHERE {_DONE}",
        p,
    ),
    "pct_customers_country": lambda c, p: _one(
        c, "SELECT 100.0 * SUM(country = :country) / count(*) FROM customers", p
    ),
    "times_product_month": lambda c, p: _one(
        c,
        f"SELECT SUM(CASE WHEN p.name = :a THEN oi.quantity * oi.unit_price END) / "
        f"SUM(CASE WHEN p.name = :b THEN oi.quantity * oi.unit_price END) {_ITEMS} WHERE {_DONE}",
        p,
    ),
    "orders_last_days": lambda c, p: _one(c, f"SELECT count(*) FROM orders o WHERE {_IN}", p),
    "revenue_last_days": lambda c, p: _one(c, f"SELECT {_VALUE} {_ITEMS} WHERE {_DONE}", p),
    "single_days": lambda c, p: _one(
        c,
        f"SELECT {_VALUE} {_ITEMS} WHERE {_DONE}"
        if p["measure"] == "revenue"
        else f"SELECT count(*) FROM orders o WHERE {_IN}",
        p,
    ),
    "year_to_date": lambda c, p: _one(c, f"SELECT count(*) FROM orders o WHERE {_DONE}", p),
    "orders_between": lambda c, p: _one(c, f"SELECT count(*) FROM orders o WHERE {_DONE}", p),
    "orders_country_month": lambda c, p: _one(
        c,
        "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
        f"WHERE {_DONE} AND c.country = :country",
        p,
    ),
    "revenue_country_month": lambda c, p: _one(
        c, f"SELECT {_VALUE} {_ITEMS} WHERE {_DONE} AND c.country = :country", p
    ),
    "buyers_product_month": lambda c, p: _one(
        c, f"SELECT COUNT(DISTINCT c.id) {_ITEMS} WHERE {_DONE} AND p.name = :product", p
    ),
    "top_country_month": lambda c, p: _col(
        c,
        f"SELECT c.country {_ITEMS} WHERE {_DONE} GROUP BY c.country ORDER BY {_VALUE} DESC "
        "LIMIT 1",
        p,
    ),
    "value_all_month": lambda c, p: _one(c, f"SELECT {_VALUE} {_ITEMS} WHERE {_IN}", p),
    "orders_all_month": lambda c, p: _one(c, f"SELECT count(*) FROM orders o WHERE {_IN}", p),
    "value_status_month": lambda c, p: _one(
        c, f"SELECT {_VALUE} {_ITEMS} WHERE {_IN} AND o.status = :status", p
    ),
    "units_all_product": lambda c, p: _one(
        c, f"SELECT SUM(oi.quantity) {_ITEMS} WHERE {_IN} AND p.name = :product", p
    ),
    "refund_country_month": lambda c, p: bool(
        _one(
            c,
            "SELECT EXISTS (SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id "
            f"WHERE o.status = 'refunded' AND {_IN} AND c.country = :country)",
            p,
        )
    ),
    "price_above": lambda c, p: bool(
        _one(
            c,
            "SELECT EXISTS (SELECT 1 FROM products WHERE category = :category "
            "AND unit_price > :threshold)",
            p,
        )
    ),
    "product_sold_on_day": lambda c, p: bool(
        _one(
            c,
            f"SELECT EXISTS (SELECT 1 {_ITEMS} WHERE o.status = 'completed' "
            "AND o.order_date = :start AND p.name = :product)",
            p,
        )
    ),
    "cancel_country_month": lambda c, p: bool(
        _one(
            c,
            "SELECT EXISTS (SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id "
            f"WHERE o.status = 'cancelled' AND {_IN} AND c.country = :country)",
            p,
        )
    ),
    "never_had_status": lambda c, p: _one(
        c,
        "SELECT count(*) FROM customers c WHERE (:country IS NULL OR c.country = :country) "
        "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id "
        "AND o.status = :status)",
        {"country": None, **p},
    ),
    "products_without_status_month": lambda c, p: _one(
        c,
        "SELECT count(*) FROM products p WHERE p.id NOT IN (SELECT oi.product_id "
        f"FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE {_IN} "
        "AND o.status = :status)",
        p,
    ),
    "not_completed_month": lambda c, p: _one(
        c, f"SELECT count(*) FROM orders o WHERE {_IN} AND o.status <> 'completed'", p
    ),
    "idle_country_month": lambda c, p: _one(
        c,
        "SELECT count(*) FROM customers c WHERE c.country = :country AND c.id NOT IN "
        f"(SELECT o.customer_id FROM orders o WHERE {_IN})",
        p,
    ),
    "product_vs_product": lambda c, p: bool(
        _one(
            c,
            f"SELECT SUM(CASE WHEN p.name = :a THEN oi.quantity * oi.unit_price ELSE 0 END) > "
            f"SUM(CASE WHEN p.name = :b THEN oi.quantity * oi.unit_price ELSE 0 END) {_ITEMS} "
            f"WHERE {_DONE}",
            p,
        )
    ),
    "month_vs_month": lambda c, p: bool(
        _one(
            c,
            f"SELECT (SELECT {_VALUE} {_ITEMS} WHERE {_DONE}) > (SELECT {_VALUE} {_ITEMS} "
            "WHERE o.status = 'completed' AND o.order_date >= :start2 AND o.order_date < :end2)",
            p,
        )
    ),
    "country_vs_country": lambda c, p: bool(
        _one(
            c,
            "SELECT SUM(country = :a) > SUM(country = :b) FROM customers",
            p,
        )
    ),
}
"""Template → its truth by a direct SQL query (a number, the names in order, or yes/no)."""

_ARITHMETIC = {
    "percent_of": (r"What is ([\d.]+)% of (\d+)\?", "SELECT {0} * {1} / 100.0"),
    "sum_times": (r"What is \((\d+) \+ (\d+)\) \* (\d+)\?", "SELECT ({0} + {1}) * {2}"),
    "square_root": (r"square root of (\d+)\?", "SELECT sqrt({0})"),
    "power": (r"What is (\d+) to the power of (\d+)\?", "SELECT pow({0}, {1})"),
    "divide": (r"What is (\d+) divided by (\d+)\?", "SELECT {0} * 1.0 / {1}"),
    "price_change": (
        r"price of (\d+) dollars rises by (\d+)% and then falls by (\d+)%",
        "SELECT {0} * (1 + {1} / 100.0) * (1 - {2} / 100.0)",
    ),
}


def _sql_truth(conn: sqlite3.Connection, q: GenQuestion) -> Any:
    if q.kind == "arithmetic":
        pattern, sql = _ARITHMETIC[q.template]
        found = re.search(pattern, q.text)
        assert found, q.text
        return conn.execute(sql.format(*found.groups())).fetchone()[0]
    return SQL[q.template](conn, dict(q.params))


def _agrees(expected: Expected, truth: Any) -> bool:
    if expected.check == "yes_no":
        return expected.yes is truth
    if expected.check == "number":
        return math.isclose(expected.numbers[0], truth, abs_tol=0.006)
    names = [slot[0] for slot in expected.names]
    if expected.check == "names+number":
        return names == [truth[0]] and math.isclose(expected.numbers[0], truth[1], abs_tol=0.006)
    if expected.names[0][0][:1].isalpha() and re.fullmatch(r"\d{4}-\d\d", str(truth[0])):
        return truth[0] in expected.names[0]  # a month
    return names == list(truth)


def test_every_template_has_an_sql_truth(asked: list[GenQuestion]) -> None:
    templates = {q.template for q in asked}
    assert templates == set(SQL) | set(_ARITHMETIC)


def test_every_truth_agrees_with_sql(db: Path, asked: list[GenQuestion]) -> None:
    """All 170-odd, not a sample: they take well under a second together."""
    with sqlite3.connect(db) as conn:
        conn.create_function("sqrt", 1, math.sqrt)
        conn.create_function("pow", 2, math.pow)
        wrong = [
            (q.id, q.expected, truth)
            for q in asked
            if not _agrees(q.expected, truth := _sql_truth(conn, q))
        ]
    assert not wrong


def test_the_sql_cross_check_catches_a_wrong_truth(db: Path, asked: list[GenQuestion]) -> None:
    """The agreement test can fail: a nudged truth (or the opposite yes/no) is refused."""
    with sqlite3.connect(db) as conn:
        conn.create_function("sqrt", 1, math.sqrt)
        conn.create_function("pow", 2, math.pow)
        for kind in KINDS:
            q = next(q for q in asked if q.kind == kind)
            e = q.expected
            if e.check == "yes_no":
                bad = replace(e, yes=not e.yes)
            elif e.numbers:
                bad = replace(e, numbers=(e.numbers[0] + 1,))
            else:
                bad = replace(e, names=(("Nobody Here",), *e.names[1:]))
            assert not _agrees(bad, _sql_truth(conn, q)), q.id


# ---------------------------------------------------------------------------------------------
# The checkers


def _right_reply(e: Expected) -> str:
    if e.check == "yes_no":
        return "Yes, there are." if e.yes else "No, there are none."
    parts = [slot[0] for slot in e.names] + [f"{n:,}" for n in e.numbers]
    return "The answer: " + ", then ".join(parts) + "."


def _wrong_reply(e: Expected) -> str:
    if e.check == "yes_no":
        return "No, there are none." if e.yes else "Yes, there are."
    if e.check == "number":
        return f"The answer: {e.numbers[0] * 1.13 + 7:,.2f}."
    if e.ordered and len(e.names) > 1:
        return "The answer: " + ", then ".join(slot[0] for slot in reversed(e.names)) + "."
    return "The answer: Nobody Here, " + ", ".join(f"{n + 9:,}" for n in e.numbers) + "."


def test_each_question_accepts_a_right_reply_and_refuses_a_wrong_one(
    asked: list[GenQuestion],
) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for q in asked:
        right, wrong = (
            check(_right_reply(q.expected), q.expected),
            check(_wrong_reply(q.expected), q.expected),
        )
        assert right.correct and right.failure is None, (q.id, _right_reply(q.expected))
        assert not wrong.correct and wrong.failure, (q.id, _wrong_reply(q.expected))
        seen[q.kind].add(q.expected.check)
    assert set(seen) == set(KINDS)


RULE = Trap("applied the completed-only rule", (157,))
OPPOSITE = Trap("named the opposite extreme", names=("Laptop Pro",))
PRICED = Expected("names+number", numbers=(1273.98,), names=(("Laptop Basic",),))


@pytest.mark.parametrize(
    ("reply", "expected", "verdict"),
    [
        ("Revenue was $12,345.67.", Expected("number", numbers=(12345.67,)), None),
        ("About 12,346 dollars.", Expected("number", numbers=(12345.67,)), None),
        ("About 12,300 dollars.", Expected("number", numbers=(12345.67,)), "wrong number"),
        ("I could not find it.", Expected("number", numbers=(3,)), "no number"),
        ("", Expected("number", numbers=(3,)), "no answer"),
        ("8.2% were cancelled", Expected("number", numbers=(8.21,), tolerance=0.1), None),
        ("8.4% were cancelled", Expected("number", numbers=(8.21,), tolerance=0.1), "wrong number"),
        (
            "There were 157 orders.",
            Expected("number", numbers=(170,), traps=(RULE,)),
            "applied the completed-only rule",
        ),
        ("A, then B.", Expected("names", names=(("A",), ("B",)), ordered=True), None),
        ("B, then A.", Expected("names", names=(("A",), ("B",)), ordered=True), "wrong order"),
        ("B, then A.", Expected("names", names=(("A",), ("B",))), None),
        ("Mouse Pad Basic", Expected("names", names=(("Mouse Basic",),)), "wrong row/name"),
        ("mouse basic", Expected("names", names=(("Mouse Basic",),)), None),
        ("Let us see: DE.", Expected("names", names=(("US",),)), "wrong row/name"),
        ("It is US.", Expected("names", names=(("US",),)), None),
        (
            "The cheapest is Laptop Pro.",
            Expected("names", names=(("Mouse Basic",),), traps=(OPPOSITE,)),
            "named the opposite extreme",
        ),
        ("July 2026 was best.", Expected("names", names=(("July 2026", "2026-07"),)), None),
        ("2026-07 was best.", Expected("names", names=(("July 2026", "2026-07"),)), None),
        ("Laptop Basic at 1,273.98", PRICED, None),
        ("Laptop Basic at 1,200", PRICED, "wrong number"),
        ("Laptop Pro at 1,273.98", PRICED, "wrong row/name"),
        ("Yes — three of them.", Expected("yes_no", yes=True), None),
        ("There are no such customers.", Expected("yes_no", yes=True), "states the opposite"),
        ("The query returned 0 rows.", Expected("yes_no", yes=False), None),
        ("There are 4 such customers.", Expected("yes_no", yes=False), "states the opposite"),
        ("I ran the query.", Expected("yes_no", yes=False), "no yes/no"),
        ("I found 3 customers from IT with refunds.", Expected("yes_no", yes=True), None),
        ("On 2026-09-07 there were 36.", Expected("number", numbers=(7,)), "wrong number"),
        ("From 2026-09-07: 7 orders.", Expected("number", numbers=(7,)), None),
    ],
)  # fmt: skip
def test_checker_cases(reply: str, expected: Expected, verdict: str | None) -> None:
    assert check(reply, expected).failure == verdict


def test_stance_reads_a_leading_yes_or_no_first() -> None:
    assert stance("No. Although there are refunds elsewhere...") is False
    assert stance("Yes, but not many.") is True
    assert stance("Here is the query I ran.") is None


# ---------------------------------------------------------------------------------------------
# The harness


def _result(
    output: str, *, success: bool = True, code: str | None = None, trace: Any = ()
) -> RunResult:
    meta = RunMetadata(iterations=3, error_code=code, trace=list(trace))
    return RunResult(output, success, None, "t", meta, error_code=code)


def test_classify_names_the_run_failures() -> None:
    q = Asked("x", "count", "tuning", "How many?", expected=Expected("number", numbers=(42,)))
    assert classify(q, _result("42 of them")) is None
    assert classify(q, _result("41 of them")) == "wrong number"
    failed = _result("I could not complete this request", success=False, code="iteration_limit")
    assert classify(q, failed) == "loop/iteration limit"
    timed_out = _result("…", success=False, code="model_timeout")
    assert classify(q, timed_out) == "model timeout"
    assert classify(q, _result("…", success=False, code="tool_failed")) == "error: tool_failed"
    degraded = [{"node": "observe", "error_code": "iteration_limit"}, {"signal": "direct_answer"}]
    assert classify(q, _result("41", trace=degraded)) == "loop/iteration limit"
    assert classify(q, _result("42", trace=degraded)) is None


async def test_the_harness_runs_and_classifies_with_a_scripted_model(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = ensure_sample_db(home)
    chosen = select(db, HALVES, 3)
    assert [a.half for a in chosen] == ["tuning"] * 3 + ["held-back"] * 3
    assert len({a.kind for a in chosen[:3]}) == 3  # a limit spans the kinds
    top = top_products(db, date.today())
    headline = Asked(
        "headline", "top_n", "tuning", SALES_QUESTION,
        expected=Expected("names", names=tuple((n,) for n, _ in top), ordered=True),
    )  # fmt: skip
    runs = await eval_model("scripted:sales", [headline, *chosen], home, echo=False)
    assert runs[0].correct and runs[0].failure is None  # scripted:sales knows this one
    for run in runs[1:]:
        assert not run.correct and run.failure in FAILURE_KINDS
        assert run.iterations >= 1 and run.seconds >= 0
    text = report(runs, (4.0, 3.0, 2.0), (4.5, 3.1, 2.0))
    assert "load average before 4.00 3.00 2.00, after 4.50 3.10 2.00" in text
    assert "| `scripted:sales` | tuning | 4 | 25 % |" in text
    assert "| `scripted:sales` | held-back | 3 | 0 % |" in text
    assert "slowest five:" in text
    assert all(f"- {r.id}: {r.failure}" in text for r in runs[1:])


def test_a_fresh_draw_asks_the_same_slots_with_other_questions(db: Path) -> None:
    tuned_on = select(db, ("held-back",), 0)
    fresh = select(db, ("held-back",), 0, seed=22)
    assert [a.id for a in fresh] == [a.id for a in tuned_on]
    assert all(a.half == "held-back" for a in fresh)
    changed = sum(a.text != b.text for a, b in zip(fresh, tuned_on, strict=True))
    assert changed > len(fresh) * 0.6, changed


def test_dates_follow_the_database_day(tmp_path: Path) -> None:
    """'last month' and 'today' are those of the database's generated_on day."""
    day = date(2025, 3, 1)
    qs = generate(build_sample_db(tmp_path / "s.db", today=day))
    today = next(q for q in qs if q.text.endswith("have been placed today?"))
    assert today.params["start"] == day.isoformat()
    last = [q for q in qs if "last month" in q.text and "start" in q.params]
    assert last and all(q.params["start"] == "2025-02-01" for q in last)
    assert all(q.params["end"] == "2025-03-01" for q in last)


def test_a_short_template_moves_no_other_question(
    db: Path, asked: list[GenQuestion], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a day where a template finds fewer unambiguous instances, the rest keep their half."""
    from keel.evals.generalisation import generation as generalisation

    def short(template: Any) -> Any:
        def first_only(d: Any, rng: Any) -> Any:
            yield next(template(d, rng))

        return first_only

    templates = [
        (k, n, c, short(t) if n == "top_products_revenue" else t)
        for k, n, c, t in generalisation._TEMPLATES
    ]
    monkeypatch.setattr(generalisation, "_TEMPLATES", templates)
    fewer = generate(db)
    assert len(fewer) == len(asked) - 4
    before = {q.id: q.half for q in asked}
    assert all(before[q.id] == q.half for q in fewer)
