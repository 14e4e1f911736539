"""What the question templates share: the registry, calendar months, rankings, answers.

A template is a generator over the data and a seeded RNG: it yields (question text, expected
answer, parameters) instances until `generate` has taken the template's count of distinct texts.
Instances whose answer would be ambiguous (near-ties in a ranking) are skipped by the template.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from keel.evals.generalisation._data import _Data
from keel.evals.generalisation.questions import Expected, Trap

MONEY_GAP = 1.0
"""Smallest difference between a ranked answer and its neighbour (else the instance is skipped)."""

_Instance = tuple[str, Expected, dict[str, str | int | float]]
_Template = Callable[[_Data, random.Random], Iterator[_Instance]]
_REGISTRY: list[tuple[str, str, int, _Template]] = []
"""(kind, name, count, template) in the order the kind modules register them."""


# --- registry ----------------------------------------------------------------------------------


def _template(kind: str, name: str, count: int) -> Callable[[_Template], _Template]:
    def register(fn: _Template) -> _Template:
        _REGISTRY.append((kind, name, count, fn))
        return fn

    return register


# --- calendar months ---------------------------------------------------------------------------


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


def _period(m: _Month) -> dict[str, str | int | float]:
    return {"start": m.start.isoformat(), "end": m.end.isoformat()}


def _months(d: _Data, rng: random.Random, backs: Iterable[int] = range(1, 13)) -> list[_Month]:
    pool = list(backs)
    rng.shuffle(pool)
    return [_month(d.today, b) for b in pool]


# --- the data's values and rankings ------------------------------------------------------------


_STATUSES = ("completed", "cancelled", "refunded", "pending")


def _countries(d: _Data) -> list[str]:
    return sorted({c for _, c, _ in d.customers.values()})


def _categories(d: _Data) -> list[str]:
    return sorted({c for _, c, _ in d.products.values()})


def _by_price(d: _Data, cat: str | None) -> list[tuple[str, float]]:
    return sorted(
        ((n, p) for n, c, p in d.products.values() if cat is None or c == cat), key=lambda t: t[1]
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


# --- expected answers --------------------------------------------------------------------------


def _num(value: float, decimals: int = 2, *traps: Trap, tolerance: float = 0.01) -> Expected:
    truth = round(value, decimals) if decimals else round(value)
    kept = tuple(t for t in traps if all(abs(n - truth) > 1 for n in t.numbers))
    return Expected("number", numbers=(truth,), tolerance=tolerance, traps=kept)


def _names(*names: str, ordered: bool = True, traps: tuple[Trap, ...] = ()) -> Expected:
    return Expected("names", names=tuple((n,) for n in names), ordered=ordered, traps=traps)


def _pct(value: float) -> Expected:
    return Expected("number", numbers=(round(value, 2),), tolerance=0.1)


def _yes_no(truth: bool) -> Expected:
    return Expected("yes_no", yes=truth)
