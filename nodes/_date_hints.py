"""The periods a question names, as the bounds a query compares a date column with.

The 0.5B local model gets period arithmetic wrong (the end of April, the first of the last
30 days, whether "from the 3rd to the 9th" includes the 9th). Here each period phrase of the
question becomes one hint line, `<label>: <date> >= 'start' AND <date> <= 'end'`, computed
in Python; the query prompt lists them in the order the question names them.

Recognised (case-insensitive; a day is `2026-03-04`, `March 4, 2026` or `4 March 2026`):
- a range of days, `between D1 and D2` / `from D1 to|until|through D2` (both days included
  unless the question says the last one is excluded), and of months,
  `from March to May 2026`;
- `since D` / `since March 2026` (through today);
- a day; a month and year (`April 2026`); a quarter (`Q2 2026`, `the second quarter of
  2026`); a year (`in 2025`);
- `today`, `yesterday`, `the last N days` (today included), `the last N full months`,
  `last month`, `last year`, `this month` / `month to date`, `this year` / `year to date`.

A phrase inside a longer one (the days of a range, the month of `since March 2026`) yields
no hint of its own. When the question asks for a figure per day (`per day`, `daily`), the
hints of periods longer than a day also say how many days they span.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta

__all__ = ["date_hints", "inclusive_last_days", "named_period_starts"]

_MONTHS = [calendar.month_name[m].lower() for m in range(1, 13)]
_MONTH = rf"(?:{'|'.join(_MONTHS)})"
_ISO = r"\d{4}-\d\d-\d\d"
_DAY_NUMBER = r"\d{1,2}(?:st|nd|rd|th)?"
_WRITTEN = rf"{_MONTH}\s+{_DAY_NUMBER},?\s+\d{{4}}|{_DAY_NUMBER}\s+{_MONTH},?\s+\d{{4}}"
_DAY = rf"(?:{_ISO}|{_WRITTEN})"
_MONTH_YEAR = rf"{_MONTH},?\s+\d{{4}}"
_TO = r"(?:and|up\s+to|to|until|till|through|thru|-|–)"
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3}
_ORDINALS["4th"] = 4

_ONE_DAY = timedelta(days=1)
_PER_DAY = re.compile(r"\b(?:per|a|each|every)\s+(?:calendar\s+)?day\b|\bdaily\b", re.I)
_DAYS_NOTE = re.compile(r" \(\d+ days\)$")
_Hint = tuple[int, int, str]
"""(start, end) of the phrase in the question, and its hint line."""


def date_hints(question: str, today: date) -> list[str]:
    """The date bounds of the periods `question` names, as comparisons on a date column."""
    hints = [hint for _, _, hint in _found(question, today, _FINDERS)]
    if _PER_DAY.search(question):
        return hints
    return [_DAYS_NOTE.sub("", hint) for hint in hints]


def _found(
    question: str, today: date, finders: Sequence[Callable[[str, date], Iterator[_Hint]]]
) -> list[_Hint]:
    """The phrases `finders` find, in the order the question names them; a phrase inside
    one already found (by an earlier, longer finder) is skipped."""
    found: list[_Hint] = []
    for finder in finders:
        for start, end, hint in finder(question, today):
            if not any(s <= start and end <= e for s, e, _ in found):
                found.append((start, end, hint))
    return sorted(found)


def inclusive_last_days(question: str) -> set[date]:
    """The last days of the ranges of days `question` names with both ends included ("from
    2026-05-01 to 2026-05-14, both days included"): a query comparing `< '2026-05-14'`
    leaves that day out."""
    found: set[date] = set()
    for hint in (*_day_ranges(question, date.min), *_written_day_ranges(question, date.min)):
        matched = _INCLUDED_RANGE.match(hint[2])
        if matched:
            found.add(date.fromisoformat(matched[1]))
    return found


def named_period_starts(question: str) -> list[tuple[int, date]]:
    """Where in `question` each period named by its date (a day, a range, a month, a
    quarter, a year; not "last month") begins, with the period's first day."""
    dated = [finder for finder in _FINDERS if finder not in _RELATIVE]
    starts = []
    for start, _, hint in _found(question, date.min, dated):
        first = _FIRST_BOUND.search(hint)
        if first:
            starts.append((start, date.fromisoformat(first[1])))
    return starts


_FIRST_BOUND = re.compile(r"<date> (?:>=|=) '(\d{4}-\d\d-\d\d)'")
_INCLUDED_RANGE = re.compile(r"from \S+ to (\S+), both included")


def _iter(pattern: str, question: str) -> Iterator[re.Match[str]]:
    return re.finditer(pattern, question, re.IGNORECASE)


def _parse_day(text: str) -> date | None:
    """`2026-03-04`, `March 4, 2026`, `4th March 2026` → the date (None: no such day)."""
    text = re.sub(r"(?<=\d)(?:st|nd|rd|th)\b|,", "", text.strip().lower())
    try:
        if re.fullmatch(_ISO, text):
            return date.fromisoformat(text)
        parts = text.split()
        if parts[0].isdigit():
            parts = [parts[1], parts[0], parts[2]]
        return date(int(parts[2]), _MONTHS.index(parts[0]) + 1, int(parts[1]))
    except (ValueError, IndexError):
        return None


def _month(text: str) -> tuple[int, int]:
    """`April, 2026` → (2026, 4)."""
    name, year = re.sub(",", " ", text).split()
    return int(year), _MONTHS.index(name.lower()) + 1


def _month_start(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _span(label: str, first: date, last: date) -> str:
    """A hint for the days `first`..`last`, both included."""
    if first == last:
        return f"{label}: <date> = '{first}'"
    days = (last - first).days + 1
    return f"{label}: <date> >= '{first}' AND <date> < '{last + _ONE_DAY}' ({days} days)"


def _to_today(label: str, first: date, today: date) -> str:
    """A hint for `first` through today (the bound the question's "so far" means)."""
    days = (today - first).days + 1
    return f"{label}, today included: <date> >= '{first}' AND <date> <= '{today}' ({days} days)"


def _day_ranges(question: str, today: date) -> Iterator[_Hint]:
    for m in _iter(rf"\b(?:between|from)\s+({_DAY})\s+{_TO}\s+(?:the\s+)?({_DAY})", question):
        hint = _range_hint(_parse_day(m[1]), _parse_day(m[2]), question[m.end() :], m[2])
        if hint is not None:
            yield m.start(), m.end(), hint


def _written_day_ranges(question: str, today: date) -> Iterator[_Hint]:
    """`from March 3 to 9, 2026`, `between March 3 and April 2, 2026`: one year for both."""
    pattern = (
        rf"\b(?:between|from)\s+({_MONTH})\s+({_DAY_NUMBER})\s+{_TO}\s+"
        rf"(?:({_MONTH})\s+)?({_DAY_NUMBER}),?\s+(\d{{4}})\b"
    )
    for m in _iter(pattern, question):
        first = _parse_day(f"{m[1]} {m[2]} {m[5]}")
        last = _parse_day(f"{m[3] or m[1]} {m[4]} {m[5]}")
        hint = _range_hint(first, last, question[m.end() :], m[4])
        if hint is not None:
            yield m.start(), m.end(), hint


def _range_hint(first: date | None, last: date | None, after: str, written: str) -> str | None:
    """The hint for a range of days (`written`: its last day as the question wrote it,
    `after`: the question's words after it); None when it is no range."""
    if first is None or last is None or last < first:
        return None
    if _end_excluded(after, written):
        return _span(f"from {first} to {last}, {last} excluded", first, last - _ONE_DAY)
    return _span(f"from {first} to {last}, both included", first, last)


def _end_excluded(after: str, last: str) -> bool:
    """Whether the words after a range say its last day is not part of it ("the 9th
    excluded", "end date exclusive", "exclusive of the end date")."""
    day = re.escape(last.strip())
    the_end = (
        rf"(?:the\s+)?(?:last\s+day|last\s+date|end\s+date|end\s+day|latter|{day}|{_DAY_NUMBER})"
    )
    pattern = (
        rf"^[\s,(]*(?:but\s+|with\s+)?(?:{the_end}\s+(?:is\s+|being\s+)?"
        rf"(?:excluded|exclusive|not\s+included)|exclusive\b|excluding\s+{the_end})"
    )
    return re.match(pattern, after, re.IGNORECASE) is not None


def _month_ranges(question: str, today: date) -> Iterator[_Hint]:
    pattern = rf"\b(?:between|from)\s+({_MONTH})(?:,?\s+(\d{{4}}))?\s+{_TO}\s+({_MONTH_YEAR})"
    for m in _iter(pattern, question):
        last_year, last_month = _month(m[3])
        first_month = _MONTHS.index(m[1].lower()) + 1
        first_year = int(m[2]) if m[2] else last_year
        first = date(first_year, first_month, 1)
        end = _month_start(last_year, last_month + 1)
        if end <= first:
            continue
        label = f"{m[1].title()} {first_year} to {m[3].title()}, both months included"
        yield m.start(), m.end(), _span(label, first, end - _ONE_DAY)


def _since(question: str, today: date) -> Iterator[_Hint]:
    for m in _iter(
        rf"\bsince\s+(?:the\s+start\s+of\s+)?({_DAY}|{_MONTH_YEAR}|\d{{4}})\b", question
    ):
        text = m[1]
        first = _parse_day(text)
        if first is None:
            first = date(int(text), 1, 1) if text.isdigit() else date(*_month(text), 1)
        if first <= today:
            yield m.start(), m.end(), _to_today(f"since {first}", first, today)


def _days(question: str, today: date) -> Iterator[_Hint]:
    for m in _iter(rf"\b{_DAY}\b", question):
        day = _parse_day(m[0])
        if day is not None:
            yield m.start(), m.end(), f"{day}: <date> = '{day}'"


def _months(question: str, today: date) -> Iterator[_Hint]:
    for m in _iter(rf"\b{_MONTH_YEAR}\b", question):
        year, month = _month(m[0])
        first, end = _month_start(year, month), _month_start(year, month + 1)
        label = f"{calendar.month_name[month]} {year}"
        yield m.start(), m.end(), _span(label, first, end - _ONE_DAY)


def _quarters(question: str, today: date) -> Iterator[_Hint]:
    ordinal = "|".join(_ORDINALS)
    pattern = rf"\b(?:Q([1-4])\s*,?\s*|(?:the\s+)?({ordinal})\s+quarter\s+(?:of\s+)?)(\d{{4}})\b"
    for m in _iter(pattern, question):
        quarter = int(m[1]) if m[1] else _ORDINALS[m[2].lower()]
        year = int(m[3])
        first = date(year, 3 * quarter - 2, 1)
        end = _month_start(year, 3 * quarter + 1)
        yield m.start(), m.end(), _span(f"Q{quarter} {year}", first, end - _ONE_DAY)


def _years(question: str, today: date) -> Iterator[_Hint]:
    for m in _iter(r"\b(?:in|during|for|of|throughout)\s+(?:the\s+year\s+)?(\d{4})\b", question):
        year = int(m[1])
        if 1900 <= year <= 2200:
            label = f"the year {year}"
            yield m.start(1), m.end(), _span(label, date(year, 1, 1), date(year, 12, 31))


def _last_days(question: str, today: date) -> Iterator[_Hint]:
    for m in _iter(r"\b(?:last|past)\s+(\d{1,4})\s+days\b", question):
        first = today - timedelta(days=int(m[1]) - 1)
        label = f"the last {m[1]} days, today included"
        yield m.start(), m.end(), f"{label}: <date> >= '{first}' AND <date> <= '{today}'"


def _last_months(question: str, today: date) -> Iterator[_Hint]:
    pattern = r"\b(?:last|past)\s+(\d{1,2})\s+(?:full\s+)?(?:calendar\s+)?months\b"
    for m in _iter(pattern, question):
        this = today.replace(day=1)
        first = _month_start(this.year, this.month - int(m[1]))
        yield (
            m.start(),
            m.end(),
            (
                f"the last {m[1]} full months: <date> >= '{first}' AND <date> < '{this}'"
                " (group by substr(<date>, 1, 7) for each month)"
            ),
        )


def _relative(question: str, today: date) -> Iterator[_Hint]:
    this_month = today.replace(day=1)
    last_month = _month_start(today.year, today.month - 1)
    this_year = date(today.year, 1, 1)
    yesterday = today - _ONE_DAY
    phrases: list[tuple[str, Callable[[], str]]] = [
        (r"\byesterday\b", lambda: _span("yesterday", yesterday, yesterday)),
        (
            r"\b(?:last|previous)\s+month\b",
            lambda: _span(f"last month ({last_month:%B %Y})", last_month, this_month - _ONE_DAY),
        ),
        (
            r"\b(?:last|previous)\s+year\b",
            lambda: _span(
                f"last year ({today.year - 1})",
                this_year.replace(year=today.year - 1),
                this_year - _ONE_DAY,
            ),
        ),
        (
            r"\b(?:this\s+month|month[\s-]to[\s-]date|MTD)\b",
            lambda: _to_today(f"this month ({today:%B %Y})", this_month, today),
        ),
        (
            r"\b(?:this\s+year|year[\s-]to[\s-]date|YTD)\b",
            lambda: _to_today(f"this year ({today.year})", this_year, today),
        ),
    ]
    for pattern, hint in phrases:
        for m in _iter(pattern, question):
            yield m.start(), m.end(), hint()
    if not re.search(r"\b(?:last|past)\s+\d{1,4}\s+days\b", question, re.IGNORECASE):
        for m in _iter(r"\btoday\b", question):
            yield m.start(), m.end(), f"today: <date> = '{today}'"


_FINDERS: tuple[Callable[[str, date], Iterator[_Hint]], ...] = (
    _day_ranges,
    _written_day_ranges,
    _month_ranges,
    _since,
    _quarters,
    _last_days,
    _last_months,
    _days,
    _months,
    _years,
    _relative,
)
"""Longer phrases first: a phrase inside one already found is skipped."""
_RELATIVE = (_since, _last_days, _last_months, _relative)
"""Finders whose periods depend on today."""
