"""The checkpoint pool's connection check, without a round trip on every checkout.

psycopg_pool's `check_connection` sends an empty query each time a connection is handed out:
about a third of a step's checkouts' cost on a busy pool. `PeriodicCheck` sends it only when
the connection has not been verified for `interval_s`, or when its socket has something to
read while idle — which is how a backend killed by `pg_terminate_backend` or a server
restart shows itself (its farewell error, then end of file). Either way a dead connection is
found before a step uses it; a silent network partition is caught by the next full check or
by the step's own storage-outage retry, as before.
"""

from __future__ import annotations

import select
import time
import weakref
from typing import Any

__all__ = ["PeriodicCheck"]


class PeriodicCheck:
    """A pool `check` callback: full check at most every `interval_s` per connection."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._verified: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self.full_checks = 0
        """How many round-trip checks ran (tests and benchmarks read it)."""

    async def __call__(self, conn: Any) -> None:
        last = self._verified.get(conn)
        if last is not None and time.monotonic() - last < self.interval_s and _quiet(conn):
            return
        from psycopg_pool import AsyncConnectionPool

        self.full_checks += 1
        await AsyncConnectionPool.check_connection(conn)
        self._verified[conn] = time.monotonic()


def _quiet(conn: Any) -> bool:
    """True when the idle connection is open and the server has sent it nothing."""
    if conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except Exception:  # a closed socket, a bad descriptor: let the full check decide
        return False
    return not readable
