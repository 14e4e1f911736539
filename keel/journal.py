"""The idempotency journal's contract: what `act` needs to run a side effect exactly once.

A non-idempotent tool call is a durable step (as in Temporal / DBOS). Before the call the
journal records *started*; after it, *completed* with the result (or *failed* with the
error). The key is `thread_id:tool_call_id`. A resumed `act` looks the key up first:

- completed → the recorded result is reused and the tool is not called again;
- failed → the recorded error is reported again, the tool is not called again;
- started → the outcome is unknown: the tool's `reconcile(key)` hook decides, or a human.

The implementations (memory, SQLite, Postgres: the same database as the checkpoints) live
in `checkpoints.journal`; this module only defines the shape so `nodes/` can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["JournalEntry", "JournalStatus", "ToolJournal"]

JournalStatus = Literal["started", "completed", "failed"]


@dataclass(frozen=True)
class JournalEntry:
    """One journaled tool call."""

    key: str
    """`thread_id:tool_call_id`."""
    status: JournalStatus
    tool: str
    arguments: str
    """The validated arguments as canonical JSON (sorted keys)."""
    result: str | None = None
    """The tool's result (completed) or the error text (failed)."""
    run_id: str | None = None
    attempt: int = 0
    """0 for the first try; a re-run cleared after an unknown outcome counts up."""


class ToolJournal(Protocol):
    """Durable records of side-effecting tool calls, written before the next step runs.

    Every method raises `StorageUnavailableError` when the database cannot be reached, so
    the step is abandoned and retried from its checkpoint instead of being misreported.
    """

    async def get(self, key: str) -> JournalEntry | None: ...

    async def start(
        self, key: str, *, tool: str, arguments: str, run_id: str | None, attempt: int = 0
    ) -> None:
        """Record that the call is about to run (overwrites an earlier unfinished attempt)."""
        ...

    async def finish(self, key: str, *, status: JournalStatus, result: str) -> None:
        """Record the call's outcome: `completed` with its result or `failed` with the error."""
        ...

    async def delete_threads(self, thread_ids: list[str]) -> int:
        """Drop the records of these threads (retention); returns how many were dropped."""
        ...

    async def copy_thread(self, source: str, target: str) -> int:
        """Give `target` the records of `source` under its own keys (`target:tool_call_id`),
        all at once; returns how many were copied. A record `target` already has for the
        same call is replaced; `source` is left as it is."""
        ...
