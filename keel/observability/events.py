"""Events raised outside the graph's state: breakers, rate limits, caches, budgets, queues.

Each call logs one event and feeds its metric, so callers in `keel.resilience`,
`keel.cost`, `keel.cache` and the service need one line:

```python
from keel.observability import events
events.breaker_changed("model:openai:gpt-4o-mini", "closed", "open", failure_rate=0.6)
events.cache_lookup("model", hit=True)
```
The run context (run_id, thread_id, tenant) is bound already when called inside a run.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from keel.observability.logs import keel_logger
from keel.observability.recorder import metrics_recorder

if TYPE_CHECKING:
    from keel.observability import metrics
else:
    metrics = metrics_recorder()  # nothing is kept in a `keel run` process (`recorder`)

__all__ = [
    "RUN_MARKS",
    "breaker_changed",
    "budget_decision",
    "cache_lookup",
    "queue_depth",
    "rate_limit_waited",
]


RUN_MARKS: ContextVar[set[str] | None] = ContextVar("keel_run_marks", default=None)
"""Marks the current run earned outside its state (`cached`); the tracer tags the run."""


def breaker_changed(breaker: str, old: str, new: str, **fields: Any) -> None:
    """A circuit breaker moved from `old` to `new` (`closed`, `half_open`, `open`)."""
    metrics.record_breaker_state(breaker, new)
    level = 30 if new == "open" else 20
    keel_logger().log(level, "breaker.change", breaker=breaker, old=old, new=new, **fields)


def rate_limit_waited(limiter: str, seconds: float, **fields: Any) -> None:
    """A call waited `seconds` for the rate limiter `limiter`."""
    metrics.record_rate_limit_wait(limiter, seconds)
    wait_ms = round(seconds * 1000, 1)
    keel_logger().info("ratelimit.wait", limiter=limiter, wait_ms=wait_ms, **fields)


def cache_lookup(cache: str, *, hit: bool, **fields: Any) -> None:
    """A look-up in cache `cache` (`model`, `tool`, `run`); only hits are logged (at info)."""
    metrics.record_cache(cache, hit)
    if hit:
        marks = RUN_MARKS.get()
        if marks is not None:
            marks.add("cached")
        keel_logger().info("cache.hit", cache=cache, **fields)


def budget_decision(decision: str, **fields: Any) -> None:
    """A budget check's decision: `allow` (logged at debug), `downgrade`, `deny`, …"""
    metrics.record_budget_decision(decision)
    level = 10 if decision == "allow" else 30
    keel_logger().log(level, "budget.decision", decision=decision, **fields)


def queue_depth(queue: str, depth: int) -> None:
    """The number of runs waiting in `queue` (a gauge; not logged)."""
    metrics.set_queue_depth(queue, depth)
