"""Generating the question set: every template filled over one sample database.

Each template draws from its own RNG, seeded with the seed and the template's id, so a
template that finds fewer unambiguous instances on some day changes no other template's
questions; the halves are split over every planned slot, so it moves no other question either.
"""

from __future__ import annotations

import random
from pathlib import Path

from keel.evals.generalisation import _logic, _rankings, _scopes, _totals
from keel.evals.generalisation._data import _load
from keel.evals.generalisation._templates import _REGISTRY
from keel.evals.generalisation.questions import KINDS, Expected, GenQuestion, split

__all__ = ["generate"]

_KIND_MODULES = (_totals, _rankings, _scopes, _logic)
"""Importing them registers their templates."""

_TEMPLATES = sorted(_REGISTRY, key=lambda entry: KINDS.index(entry[0]))
"""Every template, kind by kind in `KINDS` order (a stable sort keeps each kind's own order)."""


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
