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

`check` reads a reply as a person would skim it and says what kind of miss a wrong reply is.

Modules: `questions` (the question model and the split into halves), `checking` (the
checker and the failure kinds), `generation` (`generate`); private: `_data` (the database's
rows), `_templates` (what templates share) and the templates by kind (`_totals`,
`_rankings`, `_scopes`, `_logic`).
"""

from __future__ import annotations

from keel.evals.generalisation._templates import MONEY_GAP as MONEY_GAP
from keel.evals.generalisation.checking import (
    FAILURE_KINDS,
    Verdict,
    check,
    stance,
)
from keel.evals.generalisation.checking import numbers_in as numbers_in
from keel.evals.generalisation.generation import generate
from keel.evals.generalisation.questions import (
    HALVES,
    KINDS,
    Expected,
    GenQuestion,
    Half,
    Trap,
    split,
)
from keel.evals.generalisation.questions import Check as Check

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
