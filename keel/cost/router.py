"""The tier router: pick the starting tier, escalate after repeated failure, downgrade to fit.

Decisions are pure functions of the question, the state counters and the budget, so a
resumed run routes the same way; the caller writes each decision into the trace.

- start: cheap heuristics on the question (length, analysis words, several asks);
- escalate: after `escalate_after` malformed replies or failed calls in a step, one tier up
  (past any tier that already failed in this run: escalating back into it would repeat
  the failure);
- downgrade: when the active tier's worst-case estimate does not fit the budget, the most
  capable cheaper tier that fits.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from keel.cost.tiers import DEFAULT_TIER, next_tier

__all__ = ["RouteDecision", "classify_task", "escalation", "start_tier"]

RouteKind = Literal["start", "escalate", "downgrade"]

_COMPLEX_WORDS = re.compile(
    r"\b(why|explain|analy[sz]e|analysis|compare|comparison|trend|trends|forecast|predict|"
    r"correlat\w*|strategy|recommend\w*|evaluate|break ?down|step[- ]by[- ]step|versus|vs\.?|"
    r"year[- ]over[- ]year|cohort|growth|insight\w*)\b",
    re.IGNORECASE,
)
_SIMPLE_START = re.compile(
    r"^\s*(what is|what's|who is|how many|how much|list|show|name|when|where|is|are|does|do)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RouteDecision:
    """One routing decision, as it goes into the trace."""

    kind: RouteKind
    tier: str
    previous: str | None
    reason: str


def classify_task(question: str) -> tuple[str, str]:
    """The tier a task needs by its wording: (tier, why). No model call, microseconds."""
    words = len(question.split())
    hits = sorted({m.group(0).lower() for m in _COMPLEX_WORDS.finditer(question)})
    asks = question.count("?") + len(re.findall(r"\b(and then|also|as well as)\b", question, re.I))
    score = len(hits) + (1 if words > 40 else 0) + (1 if asks > 1 else 0)
    if score >= 2:
        return "complex", f"analysis words {hits}, {words} words, {asks} asks"
    if score == 0 and words <= 16 and _SIMPLE_START.search(question):
        return "simple", f"short lookup ({words} words)"
    return DEFAULT_TIER, f"{words} words, analysis words {hits or 'none'}"


def _nearest(wanted: str, names: list[str]) -> str:
    """`wanted` if configured, else the closest configured tier (ties go to the stronger)."""
    if wanted in names:
        return wanted
    order = ("simple", "standard", "complex")
    rank = order.index(wanted) if wanted in order else 1
    return min(names, key=lambda n: (abs(order.index(n) - rank), -order.index(n)))


def start_tier(question: str, names: list[str], *, routing: bool = True) -> RouteDecision:
    """The tier a new run starts on."""
    if not routing:
        tier = _nearest(DEFAULT_TIER, names)
        return RouteDecision("start", tier, None, "routing off: the standard tier")
    wanted, why = classify_task(question)
    tier = _nearest(wanted, names)
    suffix = "" if tier == wanted else f" ('{wanted}' is not configured)"
    return RouteDecision("start", tier, None, f"task looks {wanted}: {why}{suffix}")


def escalation(
    names: list[str],
    current: str,
    *,
    signal: str | None,
    repairs: int,
    failures: int,
    escalate_after: int,
    failed: Collection[str] = (),
) -> RouteDecision | None:
    """One tier up after every `escalate_after` consecutive malformed replies or failures.

    Tiers in `failed` (the state's `tried_tiers`) are passed over: the next stronger tier
    that has not failed in this run, or None when there is none.
    """
    if signal == "repair" and repairs and repairs % escalate_after == 0:
        why = f"{repairs} malformed replies in a row"
    elif signal == "retry" and failures and failures % escalate_after == 0:
        why = f"{failures} failed calls in a row"
    else:
        return None
    up = next_tier(names, current, +1)
    while up is not None and up in failed:
        up = next_tier(names, up, +1)
    if up is None:
        return None
    return RouteDecision("escalate", up, current, why)
