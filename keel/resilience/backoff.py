"""Exponential backoff with full jitter (AWS architecture blog's "Full Jitter")."""

from __future__ import annotations

import random

from keel.config import RetrySettings


def backoff_delay(attempt: int, policy: RetrySettings, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (1-based): uniform in [0, cap]."""
    if attempt <= 0:
        return 0.0
    cap = min(policy.max_s, policy.initial_s * policy.multiplier ** (attempt - 1))
    return rng.uniform(0.0, cap)
