"""The degradation chain: what a run that cannot go on normally tries before it gives up.

1. another model tier — when the failure was the model's (it failed, refused, is behind an
   open breaker or a rate limit, or could not produce a usable reply): the other configured
   tiers, cheaper ones first (nearest first), then stronger ones; a tier whose model has
   already failed in this run, or whose breaker is open, is skipped;
2. a direct answer without tools — one model call that answers from the observations so far,
   when the model could not drive the tools (malformed or cut-off replies, a context too
   long for the full history, the iteration limit);
3. a clean failure — an error code, the reason, and the last result obtained.

Everything else goes straight to the clean failure: an unavailable or refusing model (after
its retries and the other tiers) would not answer either; a tool whose backend is gone
leaves nothing to answer from, and an answer without it would be a guess; a passed
deadline or an exhausted budget leaves no room for another call; a fatal failure (a
developer mistake, a cancelled run) must not be papered over. These are pure functions of
the failure record and the tier names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from keel.errors import ErrorCode
from keel.types import ErrorRecord

__all__ = ["DegradeStep", "allows_direct_answer", "allows_other_tier", "tier_candidates"]

_MODEL_FAILURES = {
    str(code)
    for code in (
        ErrorCode.MODEL_ERROR,
        ErrorCode.MODEL_TIMEOUT,
        ErrorCode.MODEL_RATE_LIMITED,
        ErrorCode.MODEL_UNAVAILABLE,
        ErrorCode.MODEL_REJECTED,
        ErrorCode.CONTEXT_TOO_LONG,
        ErrorCode.MALFORMED_OUTPUT,
        ErrorCode.OUTPUT_TRUNCATED,
        ErrorCode.BREAKER_OPEN,
        ErrorCode.RATE_LIMITED,
    )
}
_DIRECT_ANSWER_HELPS = {
    str(code)
    for code in (
        ErrorCode.MALFORMED_OUTPUT,
        ErrorCode.OUTPUT_TRUNCATED,
        ErrorCode.CONTEXT_TOO_LONG,
        ErrorCode.ITERATION_LIMIT,
    )
}


@dataclass(frozen=True)
class DegradeStep:
    """One step down the chain, as it is written into the trace."""

    kind: Literal["tier", "direct_answer", "fail"]
    tier: str | None
    reason: str


def _is_model_failure(failure: ErrorRecord) -> bool:
    return failure["node"] == "reason" and failure["code"] in _MODEL_FAILURES


def allows_other_tier(failure: ErrorRecord | None) -> bool:
    """Another model may succeed where this one failed."""
    return failure is not None and failure["kind"] != "fatal" and _is_model_failure(failure)


def allows_direct_answer(failure: ErrorRecord | None) -> bool:
    """One more call, without tools, may give an answer the observations support."""
    return (
        failure is not None
        and failure["kind"] != "fatal"
        and failure["code"] in _DIRECT_ANSWER_HELPS
    )


def tier_candidates(names: list[str], current: str | None, failed: Iterable[str]) -> list[str]:
    """Tiers to try after `current` failed: cheaper ones nearest first, then stronger ones."""
    skip = set(failed) | ({current} if current else set())
    if current not in names:
        return [n for n in names if n not in skip]
    at = names.index(current)
    order = [*names[:at][::-1], *names[at + 1 :]]
    return [n for n in order if n not in skip]
