"""Prometheus metrics (prometheus-client): the metric objects and a small API to feed them.

Multi-process: when `PROMETHEUS_MULTIPROC_DIR` is set before the process starts (the
prometheus-client convention), every process writes its values to files in that folder and
`exposition_registry()` sums them up; `keel-metrics-exporter` serves that folder for workers.
Without it, values live in memory and `/metrics` serves this process.

Label values are bounded sets (node, tool and model names, error codes, statuses): never
put ids or free text into a label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = [
    "BREAKER_STATES",
    "CONTENT_TYPE_LATEST",
    "exposition_registry",
    "is_multiprocess",
    "mark_worker_dead",
    "metrics_app",
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
    "record_webhook",
    "record_webhook_attempt",
    "render_metrics",
    "run_in_flight",
    "set_queue_depth",
]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RUN_LATENCY = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_COST = (0.0, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)
_TOKENS = (0, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000)
_ITERATIONS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50)

RUNS = Counter("keel_runs", "Finished runs.", ["status", "tier"])
RUN_SECONDS = Histogram(
    "keel_run_duration_seconds", "Wall time of a run.", ["status"], buckets=_RUN_LATENCY
)
RUN_ITERATIONS = Histogram(
    "keel_run_iterations", "Reason→act→observe cycles per run.", buckets=_ITERATIONS
)
RUN_COST = Histogram("keel_run_cost_usd", "Model cost of one run in USD.", buckets=_COST)
RUN_TOKENS = Histogram("keel_run_tokens", "Tokens (prompt + completion) per run.", buckets=_TOKENS)
COST_TOTAL = Counter("keel_cost_usd", "Model cost in USD.", ["tier"])
TOKENS_TOTAL = Counter("keel_tokens", "Tokens used.", ["tier"])
IN_FLIGHT = Gauge("keel_runs_in_flight", "Runs executing right now.", multiprocess_mode="livesum")
MODEL_CALLS = Counter("keel_model_calls", "Model calls.", ["model", "outcome"])
MODEL_SECONDS = Histogram(
    "keel_model_call_duration_seconds", "Latency of one model call.", ["model"], buckets=_LATENCY
)
TOOL_CALLS = Counter("keel_tool_calls", "Tool calls.", ["tool", "outcome"])
TOOL_SECONDS = Histogram(
    "keel_tool_call_duration_seconds", "Latency of one tool call.", ["tool"], buckets=_LATENCY
)
RETRIES = Counter("keel_retries", "Model calls retried after a retryable failure.", ["error_code"])
REPAIRS = Counter("keel_repairs", "Malformed model replies sent back for repair.", ["error_code"])
FALLBACKS = Counter("keel_fallbacks", "Runs that degraded to the fallback node.", ["error_code"])
BREAKER_STATE = Gauge(
    "keel_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
    multiprocess_mode="mostrecent",
)
BREAKER_CHANGES = Counter("keel_breaker_transitions", "Breaker state changes.", ["breaker", "to"])
RATE_LIMIT_WAIT = Histogram(
    "keel_rate_limit_wait_seconds",
    "Time spent waiting for a rate limit.",
    ["limiter"],
    buckets=_LATENCY,
)
CACHE = Counter("keel_cache_requests", "Cache look-ups.", ["cache", "result"])
BUDGET = Counter("keel_budget_decisions", "Budget checks by decision.", ["decision"])
WEBHOOKS = Counter(
    "keel_webhook_deliveries", "Run webhooks by final outcome (after retries).", ["outcome"]
)
WEBHOOK_ATTEMPTS = Counter(
    "keel_webhook_attempts", "Webhook POSTs sent, retries included.", ["result"]
)
QUEUE_DEPTH = Gauge(
    "keel_queue_depth", "Runs waiting in the queue.", ["queue"], multiprocess_mode="mostrecent"
)

BREAKER_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
Outcome = Literal["ok", "error"]

_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)` (in the order of its label names), remembered.
    prometheus-client checks the values and takes a lock on every `labels()` (1.2 µs
    positional, 1.8 µs by name, against 0.15 µs for this look-up), and a run records about
    thirty values (issue 19). The children are the ones prometheus-client keeps anyway;
    label values are bounded sets, so this map is too."""
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


def record_run(
    *,
    status: str,
    tier: str,
    seconds: float,
    iterations: int,
    tokens: int,
    cost: float,
) -> None:
    """A finished run: `status` is `success`, `failed`, `interrupted` or `error`."""
    _child(RUNS, status, tier).inc()
    _child(RUN_SECONDS, status).observe(seconds)
    RUN_ITERATIONS.observe(iterations)
    RUN_TOKENS.observe(tokens)
    RUN_COST.observe(cost)
    if tokens:
        _child(TOKENS_TOTAL, tier).inc(tokens)
    if cost:
        _child(COST_TOTAL, tier).inc(cost)


def run_in_flight(delta: int) -> None:
    """+1 when a run starts executing, -1 when it stops."""
    IN_FLIGHT.inc(delta)


def record_model_call(model: str, outcome: Outcome, seconds: float) -> None:
    _child(MODEL_CALLS, model, outcome).inc()
    _child(MODEL_SECONDS, model).observe(seconds)


def record_tool_call(tool: str, outcome: Outcome, seconds: float) -> None:
    _child(TOOL_CALLS, tool, outcome).inc()
    _child(TOOL_SECONDS, tool).observe(seconds)


def record_retry(error_code: str | None) -> None:
    _child(RETRIES, error_code or "unknown").inc()


def record_repair(error_code: str | None) -> None:
    _child(REPAIRS, error_code or "unknown").inc()


def record_fallback(error_code: str | None) -> None:
    _child(FALLBACKS, error_code or "unknown").inc()


def record_breaker_state(breaker: str, state: str) -> None:
    """A breaker moved to `state` (`closed`, `half_open` or `open`)."""
    _child(BREAKER_STATE, breaker).set(BREAKER_STATES[state])
    _child(BREAKER_CHANGES, breaker, state.replace("-", "_")).inc()


def record_rate_limit_wait(limiter: str, seconds: float) -> None:
    _child(RATE_LIMIT_WAIT, limiter).observe(seconds)


def record_cache(cache: str, hit: bool) -> None:
    """A look-up in `cache` (`model`, `tool`, `run`, …)."""
    _child(CACHE, cache, "hit" if hit else "miss").inc()


def record_budget_decision(decision: str) -> None:
    """`allow`, `downgrade`, `deny`, … (a short fixed vocabulary)."""
    _child(BUDGET, decision).inc()


def record_webhook(outcome: Literal["delivered", "failed", "rejected", "abandoned"]) -> None:
    """A run's webhook ended: `delivered` (2xx), `failed` (retries used up), `rejected` (a
    4xx, not retried), `abandoned` (still pending when the process stopped)."""
    _child(WEBHOOKS, outcome).inc()


def record_webhook_attempt(result: str) -> None:
    """One POST: `2xx`, `3xx`, `4xx`, `5xx` or `connect_error` / `timeout`."""
    _child(WEBHOOK_ATTEMPTS, result).inc()


def set_queue_depth(queue: str, depth: int) -> None:
    _child(QUEUE_DEPTH, queue).set(depth)


def is_multiprocess() -> bool:
    """Whether prometheus-client writes values to files (`PROMETHEUS_MULTIPROC_DIR` was set)."""
    return values.ValueClass is not values.MutexValue


def exposition_registry(multiprocess_dir: str | Path | None = None) -> CollectorRegistry:
    """What `/metrics` serves: every process's files in multi-process mode, else this one.

    Pass `multiprocess_dir` to read a folder explicitly (the standalone exporter does).
    """
    if multiprocess_dir is not None or is_multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(multiprocess_dir) if multiprocess_dir else None)
        return registry
    return REGISTRY


def render_metrics(registry: CollectorRegistry | None = None) -> bytes:
    """The text exposition format (content type `CONTENT_TYPE_LATEST`)."""
    return generate_latest(registry if registry is not None else exposition_registry())


def metrics_app(multiprocess_dir: str | Path | None = None) -> Any:
    """An ASGI app serving `/metrics`: mount it in the HTTP service."""
    return make_asgi_app(exposition_registry(multiprocess_dir))


def mark_worker_dead(pid: int, multiprocess_dir: str | Path | None = None) -> None:
    """Drop a dead worker's live gauges (in-flight runs) from the shared folder."""
    if multiprocess_dir is not None or is_multiprocess():
        mark_process_dead(pid, str(multiprocess_dir) if multiprocess_dir else None)
