"""Observability: structured logs, Prometheus metrics, LangSmith traces, readable run traces.

- `logs`: structlog set-up (JSON / pretty) with secret redaction; `bind_run` context.
- `observer`: derives log events and metrics from a run's graph updates (one place).
- `events`: one-line hooks for breakers, rate limits, caches, budgets and queues.
- `metrics`: the Prometheus metric objects, multi-process exposition, `/metrics` app.
- `recorder`: where `events` and `observer` record: the metrics, or nowhere in a one-shot
  `keel run` that serves none.
- `exporter`: a standalone `/metrics` endpoint for worker processes.
- `tracing`: LangSmith tracing with tail sampling and light payloads (`TracePolicy`).
- `run_trace`: a run's steps from the checkpoint history (`keel trace`).

Names load lazily: `keel.observability.redact` (which the CLI needs for one error line)
does not bring in structlog, Prometheus or LangChain's tracer with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.observability.logs import bind_run, configure_logging, get_logger
    from keel.observability.observer import RunObserver, observe_run
    from keel.observability.redact import Redactor
    from keel.observability.tracing import TracePolicy, Tracing

_WHERE = {
    "Redactor": "keel.observability.redact",
    "RunObserver": "keel.observability.observer",
    "TracePolicy": "keel.observability.tracing",
    "Tracing": "keel.observability.tracing",
    "bind_run": "keel.observability.logs",
    "configure_logging": "keel.observability.logs",
    "get_logger": "keel.observability.logs",
    "observe_run": "keel.observability.observer",
}

__all__ = [
    "Redactor",
    "RunObserver",
    "TracePolicy",
    "Tracing",
    "bind_run",
    "configure_logging",
    "get_logger",
    "observe_run",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'keel.observability' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
