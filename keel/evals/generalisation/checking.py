"""Checking a reply of the generalisation eval, and naming the kind of miss.

`check` reads a reply as a person would skim it: the expected numbers (to the precision the
reply writes them), the expected names (in order where it matters), or a yes/no stance (a
leading yes/no, else negative and then positive wording). It says what kind of miss a wrong
reply is, including known traps (the completed-only revenue where all orders were asked,
the opposite extreme).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keel.evals.generalisation.questions import Expected

__all__ = ["FAILURE_KINDS", "Verdict", "check", "numbers_in", "stance"]

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
