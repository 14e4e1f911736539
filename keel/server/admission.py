"""Admission control: may this run start waiting for a slot, or is it refused with 429?

Three limits, checked in this order when a run is submitted:
1. the tenant's run rate (`KEEL_RATE_LIMITS__TENANT_RUNS_PER_MINUTE`, a moving window in
   the resilience layer's storage: Redis when configured, so every API process shares it);
2. the bounded queue (`KEEL_SERVICE__MAX_QUEUED` runs waiting for a slot);
3. one run per thread, by the request's `multitask_strategy` (in `RunManager`).
Past 1 or 2 the client gets `429 Too Many Requests` with a `Retry-After` in seconds.
The global cap on runs executing at once (`KEEL_SERVICE__MAX_IN_FLIGHT`) is a semaphore
the admitted runs wait on: it never refuses, it queues.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter

from keel.config import Settings
from keel.errors import RateLimitedError
from keel.resilience import Resilience
from keel.server.errors import TooManyRequests

__all__ = ["Admission"]


class Admission:
    """Refuses runs past the tenant's rate or past the queue bound."""

    def __init__(self, settings: Settings, resilience: Resilience) -> None:
        self.settings = settings
        self.resilience = resilience
        per_minute = settings.rate_limits.tenant_runs_per_minute
        self._rate = RateLimitItemPerMinute(per_minute) if per_minute else None

    def check_room(self, queued: int, wanted: int = 1) -> None:
        """Raise `TooManyRequests` when `wanted` more runs do not fit in the bounded queue."""
        limit = self.settings.service.max_queued
        if queued + wanted > limit:
            room = max(0, limit - queued)
            asked = "" if wanted == 1 else f"; {wanted} asked for, room for {room}"
            raise TooManyRequests(
                f"the run queue is full ({limit} runs waiting{asked}); retry later",
                headers={"Retry-After": "1"},
            )

    async def admit(self, tenant: str, queued: int) -> None:
        """Raise `TooManyRequests` (429 + Retry-After) when the run may not be queued."""
        self.check_room(queued)
        try:
            await self.resilience.admit_run(tenant)
        except RateLimitedError as exc:
            raise TooManyRequests(
                f"tenant {tenant} has used its rate of runs; {exc.message}",
                headers={"Retry-After": str(await self._retry_after(tenant))},
            ) from exc

    async def _retry_after(self, tenant: str) -> int:
        """Whole seconds until the tenant's window frees a run (at least 1)."""
        if self._rate is None:
            return 1
        limiter = MovingWindowRateLimiter(self.resilience.limits.storage)
        stats = await limiter.get_window_stats(self._rate, "runs", tenant)
        return max(1, math.ceil(stats.reset_time - time.time()))
