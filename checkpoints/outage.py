"""Which failures mean "the checkpoint database is briefly gone" (retry the step from its
checkpoint) rather than "the run failed"."""

from __future__ import annotations

import sqlite3

from keel.errors import StorageUnavailableError

__all__ = ["is_storage_outage"]

_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o")


def is_storage_outage(exc: BaseException) -> bool:
    """True for dropped or refused connections, pool timeouts and a locked SQLite file."""
    if isinstance(exc, StorageUnavailableError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc).lower() for word in _SQLITE_TRANSIENT)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
