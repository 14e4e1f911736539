"""Observability: structured logs, Prometheus metrics, LangSmith traces, readable run traces.

- `logs`: structlog set-up (JSON / pretty) with secret redaction; `bind_run` context.
- `observer`: derives log events and metrics from a run's graph updates (one place).
- `events`: one-line hooks for breakers, rate limits, caches, budgets and queues.
- `metrics`: the Prometheus metric objects, multi-process exposition, `/metrics` app.
- `exporter`: a standalone `/metrics` endpoint for worker processes.
- `tracing`: LangSmith tracing with tail sampling and light payloads (`TracePolicy`).
- `run_trace`: a run's steps from the checkpoint history (`keel trace`).
"""

from __future__ import annotations

from keel.observability._tracer import TracePolicy
from keel.observability.logs import bind_run, configure_logging, get_logger
from keel.observability.observer import RunObserver, observe_run
from keel.observability.redact import Redactor
from keel.observability.tracing import Tracing

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
