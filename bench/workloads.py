"""The workloads through the service under faults: success, duplicate effects, P99, cost.

```bash
.venv/bin/python bench/workloads.py                           # every workload, 200 runs each
.venv/bin/python bench/workloads.py --agents ticket_desk --runs 50 --clients 8
```
For each agent of the repository's `langgraph.json` that has a workload here (an agent named
with `--agents` that is missing is skipped, and said so), the script starts a Keel API
(`keel.server.app.create_app`, the whole project, uvicorn on a loopback port in this
process) on a fresh `KEEL_HOME` (SQLite checkpoints and service tables, the sample shop and
help desk) and a chaos server (`keel.testing.chaos`) playing the workload's scripted model
(`scripted:<name>`'s policy) behind an OpenAI-compatible API: every request waits 200 ms,
then 30 % of requests meet a fault from the default mix (429, 500, 503, reset, hang,
malformed arguments, unknown tool, empty, truncated; seeded). The agents reach it as
`openai:chaos` with Keel's default retries (model timeout 1 s, so a hang is a timeout).
`--runs` runs go through the official `langgraph-sdk` client (`runs.wait` on a new thread
each), `--clients` at a time.

Reported per workload:
- **success**: the run finished and its result is right, checked against the databases
  (data analyst: the top products and their total, computed from raw rows; ticket desk:
  exactly one refund of the order's total, one public comment, the answer states it;
  others: the run's own success flag);
- **duplicate effects**: rows of the journaled tables beyond one per idempotency key, plus
  effects beyond one per task (a second refund of the same order, a second comment about
  it) — target 0; `—` for a workload with no side effects;
- **P50 / P99**: each run's wall time at the client;
- **cost / run**: the tokens the chaos server served (failed requests are free), priced as
  gpt-4o-mini (`keel.config.DEFAULT_PRICING`), per run.

The ticket desk's approval threshold is raised for the benchmark (no run waits for a
human); the threshold's own path is tested in `tests/integration/test_ticket_desk.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

PRICE_AS = "gpt-4o-mini"
LATENCY_S = 0.2
QUESTION_KEY = "messages"


Check = Callable[[dict[str, Any], str], Awaitable[bool]]
"""`check(values, thread_id)`: the run's result is right (read from the databases)."""


@dataclass
class Task:
    """One run: the question and how to check its result."""

    question: str
    check: Check


@dataclass
class Workload:
    """How to benchmark one agent."""

    agent: str
    policy: str
    tasks: Callable[[Path, int], list[Task]]
    """`tasks(home, n)`: n tasks on the sample data under `home`."""
    duplicates: Callable[[Path], int] | None = None
    """Duplicate effects found under `home` after the runs (None: no side effects)."""
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    agent: str
    runs: int
    success: int
    duplicates: int | None
    seconds: list[float]
    cost_usd: float
    faults: int
    requests: int

    def markdown(self) -> str:
        dup = "—" if self.duplicates is None else str(self.duplicates)
        return (
            f"| {self.agent} | {self.runs} | {100 * self.success / self.runs:.1f} % | {dup} | "
            f"{_pct(self.seconds, 50):.2f} s | {_pct(self.seconds, 99):.2f} s | "
            f"${self.cost_usd / self.runs:.5f} | {self.faults} / {self.requests} |"
        )


HEADER = (
    "| workload | runs | success | duplicate effects | P50 | P99 | cost / run | faults / "
    "model requests |\n|---|---|---|---|---|---|---|---|"
)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def _input(question: str) -> Any:
    return {QUESTION_KEY: [{"role": "user", "content": question}]}


def _output(values: dict[str, Any]) -> str:
    outcome = values.get("outcome") or {}
    return str(outcome.get("output") or "") if outcome.get("success") else ""


# ------------------------------------------------------------------------- data analyst
def _analyst_tasks(home: Path, n: int) -> list[Task]:
    from keel.tools.sample_db import ensure_sample_db
    from tests.sales_truth import SALES_QUESTION, top_products

    top = top_products(ensure_sample_db(home), date.today())
    total = f"{sum(r for _, r in top):,.2f}"

    async def check(values: dict[str, Any], thread_id: str) -> bool:
        out = _output(values)
        return all(name in out for name, _ in top) and total in out

    return [Task(SALES_QUESTION, check) for _ in range(n)]


# ------------------------------------------------------------------------- ticket desk
def _ticket_tasks(home: Path, n: int) -> list[Task]:
    """`n` double-charge tasks, each on a different order of its ticket's customer (among
    the latest ten `read_ticket` shows), tickets taken in turn."""
    from keel.config import load_settings
    from keel.tickets.db import open_helpdesk
    from keel.tools.sample_db import ensure_sample_db

    shop = ensure_sample_db(home)
    open_helpdesk(load_settings(home=home), f"sqlite:///{shop}")
    with sqlite3.connect(home / "helpdesk.sqlite") as conn:
        tickets = conn.execute(
            "SELECT id, customer_id FROM helpdesk_tickets ORDER BY id"
        ).fetchall()
    with sqlite3.connect(shop) as conn:
        latest: dict[int, list[tuple[int, str, float]]] = {}
        for customer in {c for _, c in tickets}:
            rows = conn.execute(
                "SELECT o.id, o.status, ROUND(SUM(oi.quantity * oi.unit_price), 2) "
                "FROM orders o JOIN order_items oi ON oi.order_id = o.id "
                "WHERE o.customer_id = ? GROUP BY o.id ORDER BY o.order_date DESC, o.id DESC "
                "LIMIT 10",
                (customer,),
            ).fetchall()
            latest[customer] = [(int(r[0]), str(r[1]), float(r[2])) for r in rows]
    used: set[int] = set()
    pairs: list[tuple[int, int, float]] = []
    for depth in range(10):
        for ticket, customer in tickets:
            orders = [o for o in latest[customer] if o[1] == "completed"]
            if depth < len(orders) and orders[depth][0] not in used:
                used.add(orders[depth][0])
                pairs.append((ticket, orders[depth][0], orders[depth][2]))
    if len(pairs) < n:
        raise SystemExit(f"the sample has {len(pairs)} double-charge tasks, fewer than {n}")
    desk = home / "helpdesk.sqlite"

    def task(ticket: int, order: int, total: float) -> Task:
        async def check(values: dict[str, Any], thread_id: str) -> bool:
            with sqlite3.connect(desk) as conn:
                refunds = conn.execute(
                    "SELECT amount_cents, ticket_id FROM helpdesk_refunds WHERE order_id = ?",
                    (order,),
                ).fetchall()
                comments = conn.execute(
                    "SELECT count(*) FROM helpdesk_comments WHERE ticket_id = ? AND public "
                    "AND idempotency_key IS NOT NULL AND body LIKE ?",
                    (ticket, f"%order {order} %"),
                ).fetchone()[0]
            return (
                refunds == [(round(total * 100), ticket)]
                and comments == 1
                and f"${total:.2f}" in _output(values)
            )

        return Task(
            f"Ticket {ticket}: the customer was charged twice for order {order} — refund the "
            "duplicate and tell them",
            check,
        )

    return [task(*p) for p in pairs[:n]]


def _ticket_duplicates(home: Path) -> int:
    with sqlite3.connect(home / "helpdesk.sqlite") as conn:
        by_key = sum(
            conn.execute(
                f"SELECT count(*) - count(DISTINCT idempotency_key) FROM {table} "
                "WHERE idempotency_key IS NOT NULL"
            ).fetchone()[0]
            for table in ("helpdesk_refunds", "helpdesk_comments")
        )
        extra_refunds = conn.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM helpdesk_refunds "
            "GROUP BY order_id)"
        ).fetchone()[0]
        extra_comments = conn.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM helpdesk_comments "
            "WHERE idempotency_key IS NOT NULL GROUP BY ticket_id, body)"
        ).fetchone()[0]
    return int(by_key + extra_refunds + extra_comments)


# ------------------------------------------------------------------------- report writer
def _report_tasks(home: Path, n: int) -> list[Task]:
    """The headline request; the stored Markdown is checked against figures computed from
    raw rows (`keel.evals.reports`)."""
    from keel.config import load_settings
    from keel.evals.reports import expected_figures, report_cases, report_is_correct
    from keel.tools.sample_db import ensure_sample_db

    case = report_cases(date.today())[0]
    expected = expected_figures(ensure_sample_db(home), case.month)
    settings = load_settings(home=home)

    async def check(values: dict[str, Any], thread_id: str) -> bool:
        markdown = await _reports(settings, thread_id)
        return bool(values.get("outcome", {}).get("success")) and any(
            report_is_correct(m, expected) for m in markdown
        )

    return [Task(case.request, check) for _ in range(n)]


async def _reports(settings: Any, thread_id: str) -> list[str]:
    from keel.artifacts import open_artifact_store

    store = open_artifact_store(settings)
    found = []
    for artifact in await store.list("default", thread_id=thread_id):
        if artifact.name.endswith(".md"):
            got = await store.get("default", artifact.id)
            if got is not None:
                found.append(got[1].decode())
    return found


def _report_duplicates(home: Path) -> int:
    """Reports beyond one per thread (each run writes one)."""
    threads = home / "artifacts" / "default" / "threads"
    objects = home / "artifacts" / "default" / "objects"
    extra = 0
    for folder in threads.iterdir() if threads.is_dir() else []:
        names = []
        for marker in folder.iterdir():
            meta = objects / f"{marker.name}.json"
            if meta.is_file():
                names.append(json.loads(meta.read_text()).get("name", ""))
        extra += max(0, sum(1 for n in names if n.endswith(".md")) - 1)
    return extra


# ------------------------------------------------------------------------- code reviewer
def _review_tasks(home: Path, n: int) -> list[Task]:
    """The headline review of the sample repository: the run's comments (rows whose key
    starts with its thread id) must cover every seeded defect's line."""
    import subprocess

    from keel.tools.review_sample import SEEDED, ensure_sample_repo

    repo = ensure_sample_repo(home)
    lines: dict[str, tuple[str, int]] = {}
    for seeded in SEEDED:
        text = subprocess.run(
            ["git", "-C", str(repo.path), "show", f"{repo.head_commit}:{seeded.path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        number = next(i for i, line in enumerate(text.splitlines(), 1) if seeded.needle in line)
        lines[seeded.kind] = (seeded.path, number)
    table = home / "reviews.sqlite"

    async def check(values: dict[str, Any], thread_id: str) -> bool:
        if not table.is_file() or not thread_id:
            return False
        with sqlite3.connect(table) as conn:
            posted = set(
                conn.execute(
                    "SELECT path, line FROM review_comments WHERE idempotency_key LIKE ?",
                    (f"{thread_id}:%",),
                ).fetchall()
            )
        return bool(values.get("outcome", {}).get("success")) and set(lines.values()) <= posted

    return [Task(repo.task(), check) for _ in range(n)]


def _review_duplicates(home: Path) -> int:
    """Rows beyond one per key, and comments beyond one per (thread, file, line)."""
    table = home / "reviews.sqlite"
    if not table.is_file():
        return 0
    with sqlite3.connect(table) as conn:
        by_key = conn.execute(
            "SELECT count(*) - count(DISTINCT idempotency_key) FROM review_comments"
        ).fetchone()[0]
        per_line = conn.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM review_comments "
            "GROUP BY substr(idempotency_key, 1, instr(idempotency_key, ':')), path, line)"
        ).fetchone()[0]
    return int(by_key + per_line)


WORKLOADS: dict[str, Workload] = {
    "data_analyst": Workload("data_analyst", "sales", _analyst_tasks),
    "ticket_desk": Workload(
        "ticket_desk",
        "tickets",
        _ticket_tasks,
        _ticket_duplicates,
        settings={"tickets": {"refund_approval_usd": 1e9}},
    ),
    "report_writer": Workload("report_writer", "report", _report_tasks, _report_duplicates),
    "code_reviewer": Workload("code_reviewer", "review", _review_tasks, _review_duplicates),
}


# ------------------------------------------------------------------------- the harness
def _slow_chaos(policy: Any, rate: float, seed: int) -> Any:
    """The chaos server, each request answered (or failed) after `LATENCY_S`."""
    from keel.testing.chaos import ChaosServer, FaultPlan

    class SlowChaos(ChaosServer):
        async def _handle(self, request: Any) -> Any:
            await asyncio.sleep(LATENCY_S)
            return await super()._handle(request)

    return SlowChaos(policy, faults=FaultPlan(rate=rate, seed=seed, hang_s=5.0))


@contextmanager
def _serving(settings: Any, project: Any) -> Iterator[str]:
    """`create_app(settings)` on a loopback port, in a thread of this process."""
    import uvicorn

    from keel.server.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, project=project),
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


async def _drive(url: str, agent: str, tasks: list[Task], clients: int) -> tuple[int, list[float]]:
    from langgraph_sdk import get_client

    gate = asyncio.Semaphore(clients)
    seconds: list[float] = []
    ok = 0

    async with get_client(url=url, api_key=None, timeout=300) as client:

        async def one(task: Task) -> None:
            nonlocal ok
            async with gate:
                started = time.perf_counter()
                thread_id = ""
                try:
                    thread_id = (await client.threads.create())["thread_id"]
                    values = await client.runs.wait(thread_id, agent, input=_input(task.question))
                except Exception as exc:  # a failed run is a data point, not a crash
                    print(f"  {agent}: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    values = {}
                seconds.append(time.perf_counter() - started)
                if isinstance(values, dict) and await task.check(values, thread_id):
                    ok += 1

        await asyncio.gather(*(one(t) for t in tasks))
    return ok, seconds


def run_workload(
    workload: Workload, project: Any, *, runs: int, clients: int, rate: float, seed: int
) -> Row:
    from keel.config import DEFAULT_PRICING, load_settings
    from keel.observability.logs import configure_logging
    from keel.testing.policies import POLICIES

    price = DEFAULT_PRICING[PRICE_AS]
    with tempfile.TemporaryDirectory(prefix=f"keel-bench-{workload.agent}-") as tmp:
        home = Path(tmp)
        tasks = workload.tasks(home, runs)
        with _slow_chaos(POLICIES[workload.policy], rate, seed) as chaos:
            settings = load_settings(
                home=home,
                model="openai:chaos",
                openai_base_url=chaos.base_url,
                openai_api_key="bench",
                limits={"model_timeout_s": 1.0, "max_model_attempts": 5, "max_repairs": 4},
                retry={"initial_s": 0.05, "max_s": 1.0},
                observability={"log_level": "error"},
                service={"max_in_flight": max(32, clients), "max_queued": max(256, runs)},
                **workload.settings,
            )
            configure_logging(settings)
            with _serving(settings, project) as url:
                ok, seconds = asyncio.run(_drive(url, workload.agent, tasks, clients))
            stats = chaos.stats
        prompt = sum(stats.prompt_tokens_by_question.values())
        completion = sum(stats.completion_tokens_by_question.values())
        cost = (prompt * price.input + completion * price.output) / 1e6
        duplicates = workload.duplicates(home) if workload.duplicates else None
        return Row(
            workload.agent,
            runs,
            ok,
            duplicates,
            seconds,
            cost,
            sum(stats.faults.values()),
            stats.requests,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default="", help="comma-separated (default: every workload)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)

    from keel.project import load_project

    project = load_project(Path(__file__).resolve().parent.parent / "langgraph.json")
    served = set(project.graphs)
    wanted = [a for a in args.agents.split(",") if a] or list(WORKLOADS)
    rows: list[Row] = []
    for agent in wanted:
        if agent not in WORKLOADS or agent not in served:
            where = "no workload here" if agent not in WORKLOADS else "not in langgraph.json"
            print(f"skipped {agent}: {where}", file=sys.stderr)
            continue
        rows.append(
            run_workload(
                WORKLOADS[agent],
                project,
                runs=args.runs,
                clients=args.clients,
                rate=args.rate,
                seed=args.seed,
            )
        )
    load = os.getloadavg()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {args.runs} runs per workload, "
        f"{args.clients} clients, {args.rate:.0%} faults (seed {args.seed}), "
        f"{LATENCY_S * 1000:.0f} ms per model call · load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} · {os.cpu_count()} CPUs"
    )
    print(HEADER)
    for row in rows:
        print(row.markdown())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "agent": r.agent,
                        "runs": r.runs,
                        "success": r.success,
                        "duplicates": r.duplicates,
                        "p50_s": _pct(r.seconds, 50),
                        "p99_s": _pct(r.seconds, 99),
                        "mean_s": statistics.fmean(r.seconds) if r.seconds else 0.0,
                        "cost_per_run_usd": r.cost_usd / r.runs,
                        "faults": r.faults,
                        "requests": r.requests,
                    }
                    for r in rows
                ]
            )
        )
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
