"""The question model of the generalisation eval, and its split into two halves.

A question carries its expected answer (numbers, names or a yes/no stance, with the known
wrong answers worth naming) and its half. The halves are fixed per template slot and
stratified by kind, so both hold every kind and the held-back half never follows the tuning.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["HALVES", "KINDS", "Check", "Expected", "GenQuestion", "Half", "Trap", "split"]

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
