"""Exponential backoff with full jitter (AWS architecture blog's "Full Jitter"), capped,
and stretched to honour a callee's `Retry-After`."""

from __future__ import annotations

import random

from keel.config import RetrySettings

__all__ = ["backoff_delay", "retry_delay"]


def backoff_delay(attempt: int, policy: RetrySettings, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (1-based): uniform in [0, cap]."""
    if attempt <= 0:
        return 0.0
    cap = min(policy.max_s, policy.initial_s * policy.multiplier ** (attempt - 1))
    return rng.uniform(0.0, cap)


def retry_delay(
    attempt: int,
    policy: RetrySettings,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """The wait before retry `attempt`: the jittered backoff, but never less than the
    callee's `Retry-After` (which may exceed `max_s`: the callee knows best; the run's
    deadline still bounds it)."""
    delay = backoff_delay(attempt, policy, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return round(delay, 6)
