"""Every workload's eval in one call, for `keel eval --workloads`: success, P50/P99 and cost
per run for the report writer, the ticket desk and the code reviewer (each checked against
its own data), with each workload's scripted model unless a model is given."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from keel.config import load_settings
from keel.evals.reports import run_report_eval
from keel.evals.review import run_review_eval
from keel.evals.tickets import run_ticket_eval
from keel.evals.workload_eval import RunEval, WorkloadResult

__all__ = ["WORKLOAD_EVALS", "run_workload_evals"]

WORKLOAD_EVALS: dict[str, tuple[RunEval, str]] = {
    "report_writer": (run_report_eval, "scripted:report"),
    "ticket_desk": (run_ticket_eval, "scripted:tickets"),
    "code_reviewer": (run_review_eval, "scripted:review"),
}
"""Workload graph id → (its eval, the scripted model that does its headline task)."""


async def run_workload_evals(
    names: Sequence[str] | None = None,
    *,
    model: str | None = None,
    runs: int | None = None,
    price_as: str = "gpt-4o-mini",
) -> list[WorkloadResult]:
    """Run the named workloads' evals (all when None), each in a temporary home."""
    unknown = [n for n in names or () if n not in WORKLOAD_EVALS]
    if unknown:
        raise ValueError(
            f"unknown workload {', '.join(unknown)}; known: {', '.join(WORKLOAD_EVALS)}"
        )
    results = []
    for name in names or list(WORKLOAD_EVALS):
        run_eval, scripted = WORKLOAD_EVALS[name]
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                model=model or scripted, home=Path(tmp), checkpoint_url="memory://"
            )
            results.append(await run_eval(settings, runs=runs, price_as=price_as))
    return results
