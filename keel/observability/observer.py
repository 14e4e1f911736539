"""One place that turns a run's graph updates into log events and metrics.

Nodes already write what happened into the state as `TraceStep` rows (and `usage`,
`fatal_error`). The runner streams the graph with `stream_mode="updates"` and hands every
update to a `RunObserver`, which derives the events from those rows: nodes stay free of
logging and metrics calls, and what is logged is exactly what is checkpointed.

```python
async with observe_run(run_id=…, thread_id=…, model=…) as observer:
    async for update in graph.astream(…, stream_mode="updates"):
        observer.on_update(update)
    observer.finish(result)
```
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from contextvars import Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from keel.observability.events import RUN_MARKS
from keel.observability.logs import bind_run, keel_logger
from keel.observability.recorder import metrics_recorder
from keel.types import RunResult, TraceStep, is_model_call, model_calls_in, replied

if TYPE_CHECKING:
    from keel.observability import metrics
else:
    metrics = metrics_recorder()  # nothing is kept in a `keel run` process (`recorder`)

__all__ = ["RunObserver", "model_calls_in", "observe_run", "run_status"]

_OK_SIGNALS = frozenset({"answer", "tools", "repair", "compose"})


def run_status(result: RunResult) -> str:
    """`success`, `degraded` (answered by the fallback without tools), `failed` (clean
    failure) or `interrupted` (stopped mid-run)."""
    if result.status == "interrupted":
        return "interrupted"
    if result.success:
        return "degraded" if result.degraded else "success"
    return "failed"


@dataclass
class RunObserver:
    """Derives log events and metrics from one run's state updates."""

    run_id: str | None
    thread_id: str
    model: str
    tenant: str | None = None
    resumed: bool = False
    started: float = field(default_factory=time.perf_counter)
    finished: bool = False
    degraded: bool = False
    log: Any = field(default_factory=keel_logger)

    def on_update(self, chunk: Mapping[str, Any]) -> None:
        """One `stream_mode="updates"` chunk: `{node: update}` (or `__interrupt__`)."""
        for node, update in chunk.items():
            if node == "__interrupt__":
                self.log.info("run.interrupt", reason=str(update)[:500])
                continue
            if not isinstance(update, Mapping):
                continue
            rows = list(update.get("trace") or ())
            if node in ("reason", "fallback"):
                self._model_calls(rows, update)
            for step in rows:
                self._step(node, step, update)

    def _model_calls(self, rows: list[TraceStep], update: Mapping[str, Any]) -> None:
        """Count the step's real model calls: as many as its `usage` says it made (a
        route row is no call; the fallback's direct answer is one), each timed by the
        row that stands for it. Failed calls are errors: in `reason` the call of a
        retry/degrade row, in `fallback` a direct answer that did not come back."""
        usage = update.get("usage") or {}
        calls = int(usage.get("model_calls") or 0)
        if not calls:
            return
        called = [r for r in rows if is_model_call(r)]
        if any(r.get("node") == "fallback" for r in rows):
            failed = calls - sum(1 for r in called if r.get("signal") == "direct_answer")
        else:
            failed = sum(1 for r in called if not replied(r))
        for n in range(calls):
            row: Mapping[str, Any] = called[n] if n < len(called) else {}
            outcome: metrics.Outcome = "error" if n >= calls - failed else "ok"
            model = str(row.get("model") or self.model)
            metrics.record_model_call(model, outcome, float(row.get("ms") or 0.0) / 1000)

    def _step(self, node: str, step: TraceStep, update: Mapping[str, Any]) -> None:
        ms = float(step.get("ms") or 0.0)
        signal = step.get("signal")
        code = step.get("error_code")
        common = {"node": node, "iteration": step.get("iteration"), "ms": round(ms, 1)}
        if node == "reason" and step.get("node") == "route" and not is_model_call(step):
            self.log.debug("node.step", signal=signal, row="route", **common)
        elif node == "reason":
            self._model_step(step, update, signal, code, ms, common)
        elif node == "act":
            tool = step.get("action") or "?"
            outcome: metrics.Outcome = "error" if code else "ok"
            metrics.record_tool_call(tool, outcome, ms / 1000)
            self.log.log(
                30 if code else 20,
                "tool.call",
                tool=tool,
                outcome=outcome,
                error_code=code,
                **common,
            )
        elif node == "fallback":
            fatal = update.get("fatal_error") or {}
            error_code = code or fatal.get("code")
            metrics.record_fallback(error_code)
            self.degraded = True
            if signal == "direct_answer":
                self.log.info(
                    "model.call",
                    model=self.model,
                    outcome="ok",
                    signal=signal,
                    tokens=step.get("tokens", 0),
                    cost=step.get("cost", 0.0),
                    action=step.get("action"),
                    **common,
                )
            self.log.warning("run.fallback", error_code=error_code, **common)
        elif signal == "degrade":
            self.degraded = True
            self.log.warning(
                "run.degrade", error_code=code, reason=step.get("observation"), **common
            )
        else:
            self.log.debug("node.step", signal=signal, **common)

    def _model_step(
        self,
        step: TraceStep,
        update: Mapping[str, Any],
        signal: str | None,
        code: str | None,
        ms: float,
        common: dict[str, Any],
    ) -> None:
        model = str(step.get("model") or self.model)
        if is_model_call(step):
            outcome: metrics.Outcome = "ok" if replied(step) else "error"
            self.log.log(
                20 if outcome == "ok" else 30,
                "model.call",
                model=model,
                outcome=outcome,
                signal=signal,
                attempt=step.get("attempt", 0),
                tokens=step.get("tokens", 0),
                cost=step.get("cost", 0.0),
                error_code=code,
                action=step.get("action"),
                **common,
            )
        if signal == "retry":
            metrics.record_retry(code)
            self.log.warning("model.retry", attempt=step.get("attempt"), error_code=code, **common)
        elif signal == "repair":
            metrics.record_repair(code)
            self.log.warning(
                "model.repair",
                attempt=step.get("attempt"),
                error_code=code,
                reason=step.get("observation"),
                **common,
            )
        elif signal == "degrade":
            self.degraded = True
            self.log.warning(
                "run.degrade", error_code=code, reason=step.get("observation"), **common
            )
        elif signal not in _OK_SIGNALS:
            self.log.debug("node.step", signal=signal, **common)

    def finish(self, result: RunResult) -> None:
        """The run returned: log `run.end` and count it."""
        self.finished = True
        meta = result.metadata
        status = run_status(result)
        seconds = time.perf_counter() - self.started
        tier = meta.tier or "standard"
        metrics.record_run(
            status=status,
            tier=tier,
            seconds=seconds,
            iterations=meta.iterations,
            tokens=meta.total_tokens,
            cost=meta.total_cost,
        )
        self.log.log(
            20 if status != "failed" else 30,
            "run.end",
            status=status,
            tier=tier,
            iterations=meta.iterations,
            model_calls=meta.model_calls,
            tokens=meta.total_tokens,
            cost=meta.total_cost,
            latency_ms=round(seconds * 1000, 1),
            error_code=result.error_code,
            error=result.error,
        )

    def crashed(self, exc: BaseException) -> None:
        """The run raised instead of returning a result."""
        seconds = time.perf_counter() - self.started
        metrics.record_run(
            status="error", tier="-", seconds=seconds, iterations=0, tokens=0, cost=0.0
        )
        self.log.error(
            "run.error",
            error=f"{type(exc).__name__}: {exc}",
            latency_ms=round(seconds * 1000, 1),
        )


def observe_run(
    *,
    run_id: str | None,
    thread_id: str,
    model: str,
    tenant: str | None = None,
    resumed: bool = False,
) -> AbstractAsyncContextManager[RunObserver]:
    """Bind the run's context to every log event, count it in flight, log start and end."""
    return _Observed(
        bind_run(run_id=run_id, thread_id=thread_id, tenant=tenant),
        RunObserver(
            run_id=run_id, thread_id=thread_id, model=model, tenant=tenant, resumed=resumed
        ),
    )


class _Observed:
    """`observe_run`'s context manager. A class rather than an async generator: it stays
    alive for the whole run, and a generator holds its frame and arguments besides."""

    __slots__ = ("_bound", "_marks", "observer")

    def __init__(self, bound: AbstractContextManager[None], observer: RunObserver) -> None:
        self._bound = bound
        self.observer = observer
        self._marks: Token[set[str] | None] | None = None

    async def __aenter__(self) -> RunObserver:
        self._bound.__enter__()
        observer = self.observer
        try:
            observer.log.info("run.start", model=observer.model, resumed=observer.resumed)
        except BaseException:  # as the generator did: the binding ends with the failure
            self._bound.__exit__(None, None, None)
            raise
        metrics.run_in_flight(1)
        self._marks = RUN_MARKS.set(set())
        return observer

    async def __aexit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self.observer.crashed(exc)
        finally:
            if self._marks is not None:
                RUN_MARKS.reset(self._marks)
            metrics.run_in_flight(-1)
            self._bound.__exit__(typ, exc, tb)
