"""The executor interface: how admitted runs get executed, waited for, streamed and stopped.

`InProcessExecutor` runs them in this process (embedded `keel serve`, and each `keel
worker`); `QueueExecutor` hands them to workers through the procrastinate queue. The
`RunManager` admits runs and talks to whichever one it was given.

Below the routes a thread is named by its key (`ThreadRecord.key`, what its checkpoints,
journal rows and runs are keyed by): every `thread_id` here is one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from keel.server.handles import RunHandle
from keel.server.run_job import RunJob

__all__ = ["Executor"]


class Executor(Protocol):
    """Executes admitted runs; every method is safe to call from a request."""

    remote: bool
    """Runs execute in other processes (the API cannot wait on them directly)."""
    handles: dict[str, RunHandle]
    """Runs this process executes (kept a minute after they end): joins, cancels, streams."""

    async def active(self, thread_id: str) -> list[str]:
        """Ids of the thread's runs that have not ended (pending or running)."""
        ...

    async def pending(self) -> int:
        """How many admitted runs wait for a slot (what admission limits)."""
        ...

    async def submit(self, job: RunJob, handle: RunHandle, graph_input: Any) -> None:
        """Start executing `job` (its status is recorded `pending` already)."""
        ...

    async def cancel(self, run_id: str, thread_id: str, *, reason: str, wait: bool) -> bool:
        """Stop a pending or running run; False if it had ended. `wait`: until it stopped."""
        ...

    async def stopped(self, run_id: str, thread_id: str) -> bool:
        """Wait until nothing executes (or will execute) the run; False on timeout."""
        ...

    async def wait(self, handle: RunHandle) -> dict[str, Any]:
        """The run's final values (with `__interrupt__` / `__error__`), once it has ended."""
        ...

    def stream(
        self, handle: RunHandle, after: str | None = None
    ) -> AsyncIterator[tuple[str | None, str, Any]]:
        """The run's `(id, event, data)` after event id `after`, until it ends."""
        ...

    async def close(self) -> None:
        """Stop executing (running runs go back to pending and resume later)."""
        ...
