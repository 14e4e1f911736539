"""Per-tenant daily spend: a counter per (tenant, UTC day), shared through a store.

With a shared store (SQLite file, Redis) every process sees the same totals; without one
the ledger keeps them in memory. A store that fails (Redis down) never fails a run: the
ledger falls back to its in-memory totals, which may undercount other processes' spend.
"""

from __future__ import annotations

import time
from typing import Protocol

import structlog

__all__ = ["SpendStore", "TenantLedger", "day_key"]

DAY_S = 86_400
_log = structlog.get_logger("keel.cost")


class SpendStore(Protocol):
    """What the ledger needs from a store (the cache backends provide it)."""

    async def incr_float(self, key: str, amount: float, ttl_s: float) -> float | None: ...

    async def get_float(self, key: str) -> float | None: ...


def day_key(tenant: str, epoch_s: float) -> str:
    """The ledger key of `tenant`'s spend on the UTC day containing `epoch_s`."""
    return f"spend:{tenant}:{time.strftime('%Y-%m-%d', time.gmtime(epoch_s))}"


class TenantLedger:
    """Adds up USD per tenant per UTC day."""

    def __init__(self, store: SpendStore | None = None) -> None:
        self._store = store
        self._local: dict[str, float] = {}

    async def spent(self, tenant: str, now: float) -> float:
        key = day_key(tenant, now)
        if self._store is not None:
            try:
                value = await self._store.get_float(key)
            except Exception as exc:  # a store failure must not fail the run
                _log.warning("ledger.store_error", error=str(exc)[:200])
                value = None
            if value is not None:
                return value
        return self._local.get(key, 0.0)

    async def add(self, tenant: str, now: float, usd: float) -> float:
        """Record `usd` spent by `tenant` now; returns the day's total."""
        key = day_key(tenant, now)
        self._local[key] = self._local.get(key, 0.0) + usd
        if usd > 0 and self._store is not None:
            try:
                total = await self._store.incr_float(key, usd, 2 * DAY_S)
            except Exception as exc:
                _log.warning("ledger.store_error", error=str(exc)[:200])
                total = None
            if total is not None:
                return total
        return self._local[key]
