"""Where a process's metrics go: prometheus-client (`keel.observability.metrics`), or nowhere
in a one-shot `keel` command that could not serve them.

`keel run` (and `resume`, `approve`, `fork`) calls `discard_metrics()` before it imports the
runtime: it serves no `/metrics`, so values kept in its memory would end with it unread,
and recording them would cost prometheus-client's import and the metric objects (~40 M
instructions of a ~4 G start-up, issue 19). With `PROMETHEUS_MULTIPROC_DIR` set, values go
to files that an exporter serves, and are recorded as before. The modules that record
(`events`, `observer`) take `metrics_recorder()` when they are imported; a library process
never calls `discard_metrics()` and records everything.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

__all__ = ["RECORDERS", "discard_metrics", "metrics_recorder"]

RECORDERS = (
    "record_breaker_state",
    "record_budget_decision",
    "record_cache",
    "record_fallback",
    "record_model_call",
    "record_rate_limit_wait",
    "record_repair",
    "record_retry",
    "record_run",
    "record_tool_call",
    "run_in_flight",
    "set_queue_depth",
)
"""The functions of `keel.observability.metrics` that a run's modules call."""

_MULTIPROCESS_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
"""prometheus-client writes values to files when either is in the environment (even empty;
the lower-case one is its older name)."""

_discarding = False


def _ignore(*args: Any, **kwargs: Any) -> None:
    """A recorder that keeps nothing."""


_NOWHERE = SimpleNamespace(**dict.fromkeys(RECORDERS, _ignore))


def discard_metrics() -> bool:
    """Record no metric in this process from now on, unless its values go to shared files
    (`PROMETHEUS_MULTIPROC_DIR`); for a process that never serves `/metrics`. Applies to
    the recording modules imported afterwards. Returns whether metrics are discarded."""
    global _discarding
    _discarding = not any(name in os.environ for name in _MULTIPROCESS_VARIABLES)
    return _discarding


def metrics_recorder() -> Any:
    """`keel.observability.metrics`, or after `discard_metrics()` a stand-in whose
    `RECORDERS` do nothing (prometheus-client is not imported)."""
    if _discarding:
        return _NOWHERE
    from keel.observability import metrics

    return metrics
