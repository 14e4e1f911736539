"""What the workload evals (`keel.evals.reports`, `keel.evals.tickets`) share: the result
record, hosted-price settings, the P50/P99 summary and the `python -m` entry point.

One place so every workload reports success, latency and cost the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.config import Settings, load_settings
from keel.models.local import CATALOG

if TYPE_CHECKING:
    from keel.runtime import Agent
    from keel.types import RunResult

__all__ = ["Tally", "WorkloadResult", "percentile", "priced_as", "summarise", "workload_main"]


@dataclass(frozen=True)
class WorkloadResult:
    workload: str
    model: str
    runs: int
    success: float
    p50_s: float
    p99_s: float
    cost_per_run_usd: float
    price_as: str
    failures: tuple[str, ...]


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (inclusive method; a single value is its own percentile)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def priced_as(settings: Settings, price_as: str, scripted: str) -> Settings:
    """`settings` with the model names runs report (scripted and every local model) at
    `price_as`'s price."""
    price = settings.price_table()[price_as]
    names = {"scripted": price, scripted: price, **dict.fromkeys(CATALOG, price)}
    return settings.model_copy(update={"pricing": {**settings.pricing, **names}})


def summarise(
    workload: str,
    settings: Settings,
    *,
    ok: int,
    seconds: Sequence[float],
    costs: Sequence[float],
    failures: Sequence[str],
    price_as: str,
) -> WorkloadResult:
    """The result of `len(seconds)` runs of which `ok` succeeded."""
    return WorkloadResult(
        workload=workload,
        model=settings.model,
        runs=len(seconds),
        success=ok / len(seconds),
        p50_s=round(percentile(seconds, 50), 3),
        p99_s=round(percentile(seconds, 99), 3),
        cost_per_run_usd=round(sum(costs) / len(costs), 6),
        price_as=price_as,
        failures=tuple(failures),
    )


@dataclass
class Tally:
    """The runs of one eval so far: wall time and cost of each, how many passed, what failed."""

    seconds: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ok: int = 0

    async def run(self, agent: Agent, request: str, thread_id: str) -> RunResult:
        """Run `request` on `agent`, timing it and counting its cost."""
        started = time.perf_counter()
        result = await agent.arun(request, thread_id=thread_id)
        self.seconds.append(time.perf_counter() - started)
        self.costs.append(result.metadata.total_cost)
        return result

    def judge(self, request: str, result: RunResult, correct: bool) -> None:
        """Count a correct run, or keep what went wrong."""
        if correct:
            self.ok += 1
        else:
            self.failures.append(f"{request!r}: {result.error or result.output[:200]}")

    def result(self, workload: str, settings: Settings, price_as: str) -> WorkloadResult:
        return summarise(
            workload,
            settings,
            ok=self.ok,
            seconds=self.seconds,
            costs=self.costs,
            failures=self.failures,
            price_as=price_as,
        )


RunEval = Callable[..., Coroutine[Any, Any, WorkloadResult]]


def workload_main(
    run_eval: RunEval, *, default_model: str, doc: str | None, argv: Sequence[str] | None
) -> int:
    """`python -m keel.evals.<workload>`: run the eval in a temporary home and print it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--price-as", default="gpt-4o-mini")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(model=args.model, home=Path(tmp), checkpoint_url="memory://")
        result = asyncio.run(run_eval(settings, runs=args.runs, price_as=args.price_as))
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"{result.workload} ({result.model}): success {result.success:.0%} of "
            f"{result.runs} · P50 {result.p50_s}s · P99 {result.p99_s}s · "
            f"${result.cost_per_run_usd:.6f}/run at {result.price_as} prices"
        )
        for failure in result.failures:
            print(f"  failed: {failure}")
    return 0 if result.success == 1 else 1
