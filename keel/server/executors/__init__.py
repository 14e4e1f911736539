"""How admitted runs execute: one interface (`Executor`), two strategies.

- `InProcessExecutor` — as tasks of this process (embedded `keel serve`, each `keel worker`).
- `QueueExecutor` — deferred to `keel worker`s through the procrastinate queue.

`RunRunner` executes one run here (graph, stream events, status, webhook) for both.
"""

from keel.server.executors.base import Executor
from keel.server.executors.inprocess import CANCEL_WAIT_S, InProcessExecutor, cancel_handle
from keel.server.executors.queued import QueueExecutor
from keel.server.executors.runner import RunRunner

__all__ = [
    "CANCEL_WAIT_S",
    "Executor",
    "InProcessExecutor",
    "QueueExecutor",
    "RunRunner",
    "cancel_handle",
]
