"""The report writer's eval: requests for monthly sales reports, each report checked against
figures computed here in plain Python from the raw rows (never from the tools' SQL).

A run succeeds when it stores the report of the month asked for and that report states the
month's revenue, its change against the month before and the top products in order, all as
the raw rows give them. `run_report_eval` reports success, P50/P99 wall time and cost per
run, with the model's tokens priced at a hosted model's list price (`price_as`).

`keel eval` (the chaos scorecard) does not run it yet; `python -m keel.evals.reports
[--model scripted:report] [--runs N] [--json]` does.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from keel.artifacts import open_artifact_store
from keel.config import Settings
from keel.evals.workload_eval import Tally, WorkloadResult, priced_as, workload_main
from keel.tools.sample_db import ensure_sample_db

__all__ = [
    "ReportCase",
    "WorkloadResult",
    "expected_figures",
    "report_cases",
    "report_is_correct",
    "run_report_eval",
]


@dataclass(frozen=True)
class ReportCase:
    request: str
    month: str


@dataclass(frozen=True)
class Figures:
    revenue: float
    change_pct: float | None
    top: tuple[str, ...]


def _shift(month: str, back: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 - back
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def report_cases(today: date) -> list[ReportCase]:
    """The headline request and two for named months."""
    this = f"{today:%Y-%m}"
    two, three = _shift(this, 2), _shift(this, 3)
    return [
        ReportCase("Write the sales report for last month", _shift(this, 1)),
        ReportCase(f"Write the sales report for {two}", two),
        ReportCase(f"Please write a sales report for the month {three}", three),
    ]


def expected_figures(db: Path, month: str) -> Figures:
    """Revenue of completed orders, its change in % against the month before, the top 5."""

    def one(conn: sqlite3.Connection, wanted: str) -> dict[int, float]:
        done = {
            oid
            for oid, day, status in conn.execute("SELECT id, order_date, status FROM orders")
            if status == "completed" and day[:7] == wanted
        }
        per: dict[int, float] = defaultdict(float)
        for oid, pid, qty, price in conn.execute(
            "SELECT order_id, product_id, quantity, unit_price FROM order_items"
        ):
            if oid in done:
                per[pid] += qty * price
        return per

    with sqlite3.connect(db) as conn:
        now, before = one(conn, month), one(conn, _shift(month, 1))
        names = dict(conn.execute("SELECT id, name FROM products"))
    revenue, previous = round(sum(now.values()), 2), round(sum(before.values()), 2)
    ranked = sorted(now.items(), key=lambda kv: kv[1], reverse=True)[:5]
    change = round((revenue - previous) / previous * 100, 1) if previous else None
    return Figures(revenue, change, tuple(names[pid] for pid, _ in ranked))


def report_is_correct(markdown: str, expected: Figures) -> bool:
    """The report states the revenue, the change and the top products in order."""
    if f"${expected.revenue:,.2f}" not in markdown:
        return False
    if expected.change_pct is not None and f"{expected.change_pct:+.1f}%" not in markdown:
        return False
    positions = [markdown.find(f"| {name} |") for name in expected.top]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


async def run_report_eval(
    settings: Settings,
    *,
    runs: int | None = None,
    price_as: str = "gpt-4o-mini",
    today: date | None = None,
) -> WorkloadResult:
    """Run the report cases (cycled to `runs` runs) through the `report_writer` agent."""
    from keel.graphs.report_writer import agent as report_writer
    from keel.runtime import open_agent

    today = today or date.today()
    settings = priced_as(settings, price_as, "scripted:report")
    cases = report_cases(today)
    chosen = [cases[i % len(cases)] for i in range(runs or len(cases))]
    db = ensure_sample_db(settings.home)
    store = open_artifact_store(settings)
    tally = Tally()
    async with open_agent(report_writer, settings=settings) as agent:
        for i, case in enumerate(chosen):
            thread = f"report-eval-{i}"
            result = await tally.run(agent, case.request, thread)
            stored = {a.name: a for a in await store.list("default", thread_id=thread)}
            report = stored.get(f"sales-{case.month}.md")
            got = await store.get("default", report.id) if report else None
            correct = (
                result.success
                and got is not None
                and report_is_correct(got[1].decode(), expected_figures(db, case.month))
            )
            tally.judge(case.request, result, correct)
    return tally.result("report_writer", settings, price_as)


def main(argv: Sequence[str] | None = None) -> int:
    return workload_main(run_report_eval, default_model="scripted:report", doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
