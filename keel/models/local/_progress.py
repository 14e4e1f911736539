"""Telling a busy local server from a stuck one: a stall timeout instead of a total timeout.

On a loaded 2-core machine the same call can take 10 s or 200 s; a fixed wall-clock limit
turns the slow ones into failed runs. A stuck server, though, shows nothing at all. So a local
call streams (the server sends a `prompt_progress` chunk after each prompt batch, then one
chunk per token) and fails only when *nothing* moved for `stall_s`:

```
watch_progress(chunks, activity, stall_s)
  each chunk        → activity.touch()    progress of any call of this process on the server
  quiet ≥ stall_s   → LocalModelStalledError (a TimeoutError: retried like a model timeout)
```

`activity` is shared by every call to one server: the server runs one call at a time and
queues the others, so a queued call waits as long as the call ahead of it progresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

__all__ = ["Activity", "LocalModelStalledError", "watch_progress"]

T = TypeVar("T")


class LocalModelStalledError(TimeoutError):
    """The local server showed no progress on any call for the stall timeout."""


class Activity:
    """When a server last showed progress (a chunk of any call), in `clock` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last = float("-inf")

    def touch(self) -> None:
        self.last = self.clock()


async def watch_progress(
    chunks: AsyncIterator[T], activity: Activity, stall_s: float, what: str = "local model"
) -> AsyncIterator[T]:
    """Yield `chunks`, raising `LocalModelStalledError` once the server is quiet for `stall_s`.

    Quiet means: no chunk of this call or of any other call sharing `activity` since the later
    of this call's start and the last chunk. The stream is closed on the way out.
    """
    started = activity.clock()
    try:
        while True:
            step: asyncio.Future[T] = asyncio.ensure_future(anext(chunks))
            try:
                while True:
                    quiet = activity.clock() - max(started, activity.last)
                    if quiet >= stall_s:
                        raise LocalModelStalledError(
                            f"{what} made no progress for {quiet:.0f} s "
                            f"(stall timeout {stall_s:g} s, KEEL_LOCAL__STALL_TIMEOUT_S)"
                        )
                    done, _ = await asyncio.wait({step}, timeout=stall_s - quiet)
                    if done:
                        break
            except BaseException:
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
                raise
            try:
                chunk = step.result()
            except StopAsyncIteration:
                return
            activity.touch()
            yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
