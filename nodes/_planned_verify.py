"""The planned flow's answer check: the answer states the result's rows, nothing else.

A small model that has the right rows still misreads them: it stated "there are no
customers who…" over a count of 3, named the most expensive product for "the cheapest", and
wrote totals that appear nowhere. So the composed answer is checked against the rows before
it is given:

- every number it writes is a value of the result (to the precision written), a column sum
  shown to the model, the number of rows, or a number of the question;
- it names every text value of the rows (up to `NAMED_ROWS` rows), and for a one-row result
  states its numbers; asked for a total over several rows, it states a column sum;
- asked a yes/no question over a one-value result (a count or a 1/0 comparison), it says
  yes for a value above 0 and no otherwise; over no rows, no.

When the answer fails, the answer is written from the rows instead (`answer_from_rows`): a
plain sentence that states them, never a model's contradiction of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NAMED_ROWS",
    "THAN",
    "Table",
    "answer_from_rows",
    "asks_for_total",
    "column_totals",
    "format_value",
    "is_yes_no",
    "read_table",
    "verify_answer",
]

NAMED_ROWS = 10
"""Rows whose text values the answer must name; a longer result is summarised."""

_YES_NO = re.compile(
    r"^\s*(is|are|was|were|do|does|did|has|have|had|can|could|will|would|should)\b",
    re.IGNORECASE,
)
_TOTAL = re.compile(r"\b(total|sum|altogether|in all|combined)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DATES = re.compile(
    rf"\b\d{{4}}-\d\d(?:-\d\d)?\b|\b(?:{_MONTHS})\s+\d{{4}}\b|\b\d{{4}}\s+(?:{_MONTHS})\b",
    re.IGNORECASE,
)
_LEADING_STANCE = re.compile(r"\W*(yes|no)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Table:
    """A `sql_query` result."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False


def read_table(result: str) -> Table | None:
    """The table of a `sql_query` result, or None when `result` is not one."""
    try:
        body = json.loads(result)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    columns, rows = body.get("columns"), body.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        return None
    if not all(isinstance(r, list) for r in rows):
        return None
    return Table([str(c) for c in columns], rows, bool(body.get("truncated")))


THAN = re.compile(r"\bthan\b", re.IGNORECASE)
"""The word of a comparison ("more … than"): what the comparison check and mend look for."""


def is_yes_no(question: str) -> bool:
    """Whether `question` asks for a yes or a no (it opens with an auxiliary verb)."""
    return bool(_YES_NO.match(question))


def asks_for_total(question: str) -> bool:
    return bool(_TOTAL.search(question))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_value(value: Any) -> str:
    """A cell as the answer writes it: whole numbers exactly, others to 2 decimals."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        if abs(value) < 0.01:
            return f"{value:.4g}"
        return f"{value:.2f}"
    return str(value)


def column_totals(table: Table) -> list[tuple[str, float]]:
    """`(column, sum)` of each all-numeric column of a complete result of ≥ 2 rows."""
    if table.truncated or len(table.rows) < 2:
        return []
    totals = []
    for index, column in enumerate(table.columns):
        values = [row[index] if index < len(row) else None for row in table.rows]
        if all(_is_number(v) for v in values):
            totals.append((column, float(sum(v for v in values if v is not None))))
    return totals


def _numbers(text: str) -> list[tuple[float, float]]:
    """Each number of `text` (dates and months left out) with half a unit of its last digit."""
    found = []
    for literal in _NUMBER.findall(_DATES.sub(" ", text)):
        plain = literal.replace(",", "")
        decimals = len(plain.partition(".")[2])
        found.append((float(plain), 0.5 * 10.0**-decimals + 1e-9))
    return found


def _matches(written: tuple[float, float], value: float) -> bool:
    number, half_unit = written
    return abs(number - value) <= max(half_unit, 0.005 + 1e-9)


def _without_names(text: str, table: Table) -> str:
    """`text` without the result's text values (digits in a name are not numbers)."""
    for value in sorted({v for r in table.rows for v in r if isinstance(v, str)}, key=len)[::-1]:
        if value.strip():
            text = re.sub(re.escape(value), " ", text, flags=re.IGNORECASE)
    return text


def _stance(answer: str) -> bool | None:
    found = _LEADING_STANCE.match(answer)
    return None if found is None else found.group(1).lower() == "yes"


def expected_stance(table: Table) -> bool | None:
    """Yes/no as the rows say it: no rows → no; one number → above 0; else undecided."""
    if not table.rows:
        return False
    if len(table.rows) == 1 and len(table.rows[0]) == 1 and _is_number(table.rows[0][0]):
        return float(table.rows[0][0]) > 0
    return None


def verify_answer(answer: str, question: str, table: Table) -> str | None:
    """None when `answer` states `table` faithfully, else what is wrong with it."""
    text = answer.strip()
    if not text:
        return "the answer is empty"
    values = [float(v) for row in table.rows for v in row if _is_number(v)]
    values += [total for _, total in column_totals(table)]
    values.append(float(len(table.rows)))
    values += [n for n, _ in _numbers(question)]
    for written in _numbers(_without_names(text, table)):
        if not any(_matches(written, v) for v in values):
            literal = format_value(written[0])
            return f"the answer states {literal}, which is not in the result"
    if is_yes_no(question):
        expected = expected_stance(table)
        said = _stance(text)
        if said is None:
            return "the answer to a yes/no question does not start with yes or no"
        if expected is not None and said != expected:
            return f"the answer says {'yes' if said else 'no'}, the result says otherwise"
        return None
    lowered = text.lower()
    for row in table.rows[:NAMED_ROWS]:
        for value in row:
            if isinstance(value, str) and value.strip() and value.lower() not in lowered:
                return f"the answer leaves out {value!r} of the result"
    found = _numbers(_without_names(text, table))
    if len(table.rows) == 1:
        for value in table.rows[0]:
            if _is_number(value) and not any(_matches(w, float(value)) for w in found):
                return f"the answer leaves out the result's {format_value(value)}"
    totals = column_totals(table)
    if (
        asks_for_total(question)
        and totals
        and not any(_matches(w, total) for w in found for _, total in totals)
    ):
        return "the question asks for a total and the answer states none of the result's"
    return None


def _row_text(table: Table, row: list[Any]) -> str:
    cells = [format_value(v) for v in row]
    if len(cells) == 1:
        return cells[0]
    texts = [c for c, v in zip(cells, row, strict=False) if not _is_number(v)]
    numbers = [c for c, v in zip(cells, row, strict=False) if _is_number(v)]
    if texts and numbers:
        return f"{', '.join(texts)} ({', '.join(numbers)})"
    return ", ".join(cells)


def answer_from_rows(question: str, table: Table) -> str:
    """A plain sentence that states the rows (the verifier's fallback answer)."""
    rows = table.rows
    listed = "; ".join(_row_text(table, r) for r in rows[:NAMED_ROWS])
    if len(rows) > NAMED_ROWS or table.truncated:
        listed += f"; … ({len(rows)}{'+' if table.truncated else ''} rows in all)"
    if is_yes_no(question):
        stance = expected_stance(table)
        if not rows:
            return "No: no rows match."
        if stance is not None:
            return f"{'Yes' if stance else 'No'} (the query counts {listed})."
        return f"Yes: {listed}."
    if not rows:
        return "No rows match the question."
    if len(rows) == 1 and len(rows[0]) == 1:
        return f"{listed}."
    text = f"{listed}."
    totals = column_totals(table)
    if asks_for_total(question) and totals:
        sums = ", ".join(f"{format_value(t)} ({c})" for c, t in totals)
        text += f" Total: {sums}."
    return text
