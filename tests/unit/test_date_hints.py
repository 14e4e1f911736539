"""The periods a question names become the bounds a query compares a date column with.

Each hint is also run as SQL over a table holding every day of 2024–2027, and the days it
selects are compared with the period computed independently here (calendar arithmetic in
Python), so a wrong bound fails whatever the wording of the hint.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from keel.nodes import date_hints

TODAY = date(2026, 12, 6)


@pytest.fixture(scope="module")
def days() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE d (day TEXT)")
    first = date(2024, 1, 1)
    db.executemany(
        "INSERT INTO d VALUES (?)", [(str(first + timedelta(n)),) for n in range(4 * 366)]
    )
    yield db
    db.close()


def selected(db: sqlite3.Connection, hint: str) -> tuple[date, date]:
    """The first and last day the hint's condition selects."""
    condition = hint.split(": ", 1)[1]
    condition = re.sub(r" \(.*\)$", "", condition).replace("<date>", "day")
    low, high = db.execute(f"SELECT MIN(day), MAX(day) FROM d WHERE {condition}").fetchone()
    return date.fromisoformat(low), date.fromisoformat(high)


CASES = [
    # (question, [(first, last) of each period, in the order the question names them])
    (
        "How many orders from 2026-11-03 to 2026-11-09, both days included?",
        [("2026-11-03", "2026-11-09")],
    ),
    ("Orders between 2026-11-03 and 2026-11-09?", [("2026-11-03", "2026-11-09")]),
    ("Orders from 2026-11-03 until 2026-11-09 (the 9th excluded)?", [("2026-11-03", "2026-11-08")]),
    ("Revenue from March 3 to 9, 2026", [("2026-03-03", "2026-03-09")]),
    ("Revenue between 4 March 2026 and 2nd April 2026", [("2026-03-04", "2026-04-02")]),
    ("Orders from January to March 2026", [("2026-01-01", "2026-03-31")]),
    ("Orders between November 2025 and February 2026", [("2025-11-01", "2026-02-28")]),
    ("Revenue since March 2026", [("2026-03-01", "2026-12-06")]),
    ("Orders since 2026-11-20 whatever their status", [("2026-11-20", "2026-12-06")]),
    (
        "Revenue in Q2 2026 against the third quarter of 2025",
        [("2026-04-01", "2026-06-30"), ("2025-07-01", "2025-09-30")],
    ),
    ("How many customers signed up in 2025?", [("2025-01-01", "2025-12-31")]),
    ("Revenue in February 2024", [("2024-02-01", "2024-02-29")]),
    ("Orders yesterday and today", [("2026-12-05", "2026-12-05"), ("2026-12-06", "2026-12-06")]),
    (
        "Revenue last month and last year",
        [("2026-11-01", "2026-11-30"), ("2025-01-01", "2025-12-31")],
    ),
    ("Revenue of this month so far", [("2026-12-01", "2026-12-06")]),
    ("How many orders year to date?", [("2026-01-01", "2026-12-06")]),
    (
        "Orders on December 4, 2026 and on 2026-12-01",
        [("2026-12-04", "2026-12-04"), ("2026-12-01", "2026-12-01")],
    ),
    ("Orders in the last 14 days, today included", [("2026-11-23", "2026-12-06")]),
]


@pytest.mark.parametrize(("question", "periods"), CASES)
def test_each_named_period_becomes_one_hint_that_selects_exactly_its_days(
    days: sqlite3.Connection, question: str, periods: list[tuple[str, str]]
) -> None:
    hints = date_hints(question, TODAY)
    assert len(hints) == len(periods), hints
    for hint, (first, last) in zip(hints, periods, strict=True):
        assert selected(days, hint) == (date.fromisoformat(first), date.fromisoformat(last))


def test_a_range_is_one_hint_not_one_per_day_it_names() -> None:
    hints = date_hints("Orders from 2026-11-03 to 2026-11-09, both days included?", TODAY)
    assert hints == [
        "from 2026-11-03 to 2026-11-09, both included:"
        " <date> >= '2026-11-03' AND <date> < '2026-11-10'"
    ]


def test_an_unrelated_exclusion_does_not_cut_the_range_short() -> None:
    hints = date_hints("Orders between 2026-11-03 and 2026-11-09, cancelled orders excluded", TODAY)
    assert hints == [
        "from 2026-11-03 to 2026-11-09, both included:"
        " <date> >= '2026-11-03' AND <date> < '2026-11-10'"
    ]


def test_a_per_day_question_is_told_how_many_days_each_period_has() -> None:
    assert date_hints("Average orders per day in November 2026?", TODAY) == [
        "November 2026: <date> >= '2026-11-01' AND <date> < '2026-12-01' (30 days)"
    ]
    assert date_hints("Orders in November 2026?", TODAY) == [
        "November 2026: <date> >= '2026-11-01' AND <date> < '2026-12-01'"
    ]


def test_no_period_no_hint() -> None:
    assert date_hints("How many customers are from the country IT?", TODAY) == []
    assert date_hints("What is 2026 divided by 4?", TODAY) == []
