"""The local-model eval set: enough questions, truths that agree with SQL, a strict checker."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pytest

from bench.eval_questions import Expected, is_correct, questions
from keel.tools.sample_db import build_sample_db
from tests.sales_truth import SALES_QUESTION, top_products

TODAY = date(2026, 11, 26)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sample_db(tmp_path_factory.mktemp("eval") / "sample.db", today=TODAY)


def test_at_least_twenty_distinct_questions(db: Path) -> None:
    asked = questions(db, TODAY)
    assert len(asked) >= 20
    assert len({q.text for q in asked}) == len(asked)
    assert all(q.expected.names or q.expected.numbers for q in asked)


def test_the_headline_truth_matches_the_independent_one_and_sql(db: Path) -> None:
    headline = next(q for q in questions(db, TODAY) if q.text == SALES_QUESTION)
    truth = top_products(db, TODAY)
    assert headline.expected.names == tuple(name for name, _ in truth)
    assert headline.expected.alternatives == (tuple(v for _, v in truth),)
    with sqlite3.connect(db) as conn:
        (total,) = conn.execute(
            "SELECT ROUND(SUM(oi.quantity * oi.unit_price), 2) FROM order_items oi "
            "JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed' "
            "AND o.order_date >= '2026-10-01' AND o.order_date < '2026-11-01' "
            "AND oi.product_id IN (SELECT oi2.product_id FROM order_items oi2 "
            "JOIN orders o2 ON o2.id = oi2.order_id WHERE o2.status = 'completed' "
            "AND o2.order_date >= '2026-10-01' AND o2.order_date < '2026-11-01' "
            "GROUP BY oi2.product_id ORDER BY SUM(oi2.quantity * oi2.unit_price) DESC LIMIT 3)"
        ).fetchone()
    assert headline.expected.numbers == (pytest.approx(total, abs=0.011),)


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        ("A (1,000.50), then B (20.00): 1,020.50 in all.", True),
        ("A and B made 1020.5 together.", True),
        ("A: 1000.5, B: 20", True),  # the per-item alternative
        ("B and A made 1,020.50.", False),  # wrong order
        ("A and B made 1,021.50.", False),  # wrong number
        ("A made a lot.", False),  # name missing, number missing
    ],
)
def test_checker(reply: str, ok: bool) -> None:
    expected = Expected(names=("A", "B"), numbers=(1020.5,), alternatives=((1000.5, 20),))
    assert is_correct(reply, expected) is ok
