"""The scorecard: Keel and a plain LangGraph agent on the same tasks under the same faults.

Both agents talk to one chaos server (`keel.testing.chaos`) over real HTTP through
`langchain-openai`, with the same calculator tool and the same client timeout. The server's
faults are a hash of (seed, question, turn, attempt), so both meet the same fault sequence
for the same requests. Each task's answer is computed independently
(`keel.testing.chaos_tasks`). The baseline is `langchain.agents.create_agent` as a developer
would write it: `ChatOpenAI` with its default retries and LangChain's tool error handling.

Metrics, per system:
- success: the run's answer states the task's number;
- availability: the run gave the caller an answer at all (not an exception, an error result
  or a dangling tool call) — right or wrong;
- degraded: the runs whose answer came from Keel's fallback (a tool-free direct answer after
  the normal path failed): answered, but not the normal way (the baseline has none);
- error recovery: success among the runs that met at least one injected fault;
- cost: tokens of the replies the server served (what a provider bills; failed requests are
  free) priced at a hosted model's list price;
- P50 / P99: each run's wall time.

`bench/chaos.py` and `keel eval` both use this module.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.config import ModelPrice, load_settings
from keel.errors import ConfigError
from keel.observability.logs import configure_logging
from keel.testing.chaos import FAULT_KINDS, ChaosServer, FaultKind, FaultPlan
from keel.testing.chaos_tasks import Task, arithmetic_tasks, is_correct, solve_task

__all__ = [
    "Outcome",
    "Report",
    "Scorecard",
    "parse_kinds",
    "print_scorecard",
    "run_baseline",
    "run_keel",
    "scorecard",
]

CLIENT_TIMEOUT_S = 1.0
"""Both agents give up on a model request after this long (a `hang` lasts longer)."""
HANG_S = 10.0
DEFAULT_PRICE_AS = "gpt-4o-mini"


@dataclass
class Outcome:
    ok: bool
    answered: bool
    seconds: float
    model_calls: int
    faults: int
    cost_usd: float = 0.0
    degraded: bool = False
    """Answered on the degraded path (Keel's `RunResult.degraded`)."""


@dataclass
class Report:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        """The scorecard numbers (percentages 0–100, seconds, USD)."""
        n = len(self.outcomes)
        if not n:
            raise ValueError("no runs measured")
        faulted = [o for o in self.outcomes if o.faults]
        times = sorted(o.seconds for o in self.outcomes)
        successes = sum(o.ok for o in self.outcomes)
        return {
            "runs": n,
            "success": 100 * successes / n,
            "availability": 100 * sum(o.answered for o in self.outcomes) / n,
            "degraded": 100 * sum(o.degraded for o in self.outcomes) / n,
            "recovery": 100 * sum(o.ok for o in faulted) / len(faulted) if faulted else 100.0,
            "faulted": len(faulted),
            "p50": statistics.median(times),
            "p99": times[min(n - 1, int(0.99 * n))],
            "calls": statistics.mean(o.model_calls for o in self.outcomes),
            "cost": statistics.mean(o.cost_usd for o in self.outcomes),
            "cost_per_success": (
                sum(o.cost_usd for o in self.outcomes) / successes if successes else float("nan")
            ),
        }


@dataclass
class Scorecard:
    plan: FaultPlan
    price_as: str
    client_timeout_s: float
    reports: list[Report]
    faults_met: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault_rate": self.plan.rate,
            "fault_kinds": list(self.plan.kinds),
            "seed": self.plan.seed,
            "priced_as": self.price_as,
            "client_timeout_s": self.client_timeout_s,
            "systems": {r.name: r.row() for r in self.reports},
            "faults_met": self.faults_met,
        }

    def markdown(self) -> str:
        """The scorecard as a Markdown table (what docs/benchmarks.md shows)."""
        first = self.reports[0]
        lines = [
            f"{len(first.outcomes)} tasks, {self.plan.rate:.0%} faults (seed {self.plan.seed}), "
            f"client timeout {self.client_timeout_s:g}s, priced as {self.price_as}",
            "",
            "| system | success | availability | degraded | error recovery (faulted runs) "
            "| mean cost / run | cost / successful run | P50 s | P99 s | mean model calls |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.reports:
            row = r.row()
            lines.append(
                f"| {r.name} | {row['success']:.1f} % | {row['availability']:.1f} % "
                f"| {row['degraded']:.1f} % "
                f"| {row['recovery']:.1f} % ({row['faulted']:.0f}) | ${row['cost']:.6f} "
                f"| ${row['cost_per_success']:.6f} "
                f"| {row['p50']:.3f} | {row['p99']:.3f} | {row['calls']:.2f} |"
            )
        return "\n".join(lines)


def parse_kinds(text: str | None) -> tuple[FaultKind, ...]:
    """`rate_limit,reset` → the fault kinds; empty or None → the default mix."""
    if not text:
        return FAULT_KINDS
    known = set(FAULT_KINDS) | {"unauthorized", "context_too_long"}
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise ConfigError(
            f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return tuple(kinds)  # type: ignore[arg-type]


def _price(server: ChaosServer, question: str, price: ModelPrice) -> float:
    stats = server.stats
    prompt = stats.prompt_tokens_by_question[question]
    completion = stats.completion_tokens_by_question[question]
    return (prompt * price.input + completion * price.output) / 1_000_000


async def _measure(
    server: ChaosServer,
    tasks: Sequence[Task],
    one: Callable[[Task], Awaitable[tuple[bool, bool, bool]]],
    report: Report,
    price: ModelPrice,
    concurrency: int,
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def measured(task: Task) -> Outcome:
        async with gate:
            started = time.perf_counter()
            ok, answered, degraded = await one(task)
            seconds = time.perf_counter() - started
        return Outcome(
            ok=ok,
            answered=answered,
            seconds=seconds,
            model_calls=server.stats.requests_by_question[task.question],
            faults=len(server.stats.by_question.get(task.question, [])),
            cost_usd=_price(server, task.question, price),
            degraded=degraded,
        )

    report.outcomes.extend(await asyncio.gather(*(measured(t) for t in tasks)))


async def run_keel(
    server: ChaosServer,
    tasks: Sequence[Task],
    home: Path,
    *,
    price: ModelPrice,
    client_timeout_s: float = CLIENT_TIMEOUT_S,
    concurrency: int = 1,
) -> Report:
    """Keel with its defaults for retries, repairs and degradation, on the chaos server."""
    from keel.runtime import open_agent
    from keel.tools import calculator
    from keel.tools.registry import ToolRegistry

    settings = load_settings(
        model="openai:chaos",
        openai_base_url=server.base_url,
        openai_api_key="scorecard",
        checkpoint_url="memory://",
        home=home,
        limits={"model_timeout_s": client_timeout_s, "max_model_attempts": 5, "max_repairs": 4},
        retry={"initial_s": 0.05, "max_s": 1.0},
        observability={"log_level": "error"},
    )
    configure_logging(settings)  # errors only: the runs' warnings are the point, not news
    report = Report("Keel")
    async with open_agent(settings, tools=ToolRegistry.of([calculator])) as agent:

        async def one(task: Task) -> tuple[bool, bool, bool]:
            result = await agent.arun(task.question)
            answered = result.success
            return answered and is_correct(task, result.output), answered, result.degraded

        await _measure(server, tasks, one, report, price, concurrency)
    return report


async def run_baseline(
    server: ChaosServer,
    tasks: Sequence[Task],
    *,
    price: ModelPrice,
    client_timeout_s: float = CLIENT_TIMEOUT_S,
    concurrency: int = 1,
) -> Report:
    """`create_agent` + `ChatOpenAI` (default retries) with the same calculator."""
    try:
        from langchain.agents import create_agent
        from langchain_core.tools import tool as lc_tool
        from langchain_openai import ChatOpenAI
    except ImportError as exc:  # langchain is in the dev extra
        raise ConfigError(
            f"the baseline needs the dev extra (pip install -e '.[dev]'): {exc}"
        ) from exc
    from pydantic import SecretStr

    from keel.tools.calculator import evaluate, format_number

    @lc_tool("calculator")
    def lc_calculator(expression: str) -> str:
        """Evaluate an arithmetic expression, e.g. 2*(3+4)."""
        return format_number(evaluate(expression))

    model = ChatOpenAI(
        model="chaos",
        base_url=server.base_url,
        api_key=SecretStr("scorecard"),
        timeout=client_timeout_s,
        temperature=0,
    )
    agent = create_agent(model, tools=[lc_calculator], system_prompt="Use the tools.")
    report = Report("LangGraph create_agent")

    async def one(task: Task) -> tuple[bool, bool, bool]:
        try:
            state = await agent.ainvoke({"messages": [{"role": "user", "content": task.question}]})
        except Exception:
            return False, False, False
        answer = state["messages"][-1]
        answered = not getattr(answer, "tool_calls", None) and bool(str(answer.content).strip())
        return answered and is_correct(task, str(answer.content)), answered, False

    await _measure(server, tasks, one, report, price, concurrency)
    return report


async def scorecard(
    *,
    tasks: int = 50,
    rate: float = 0.3,
    kinds: Sequence[FaultKind] = FAULT_KINDS,
    seed: int = 7,
    price_as: str = DEFAULT_PRICE_AS,
    client_timeout_s: float = CLIENT_TIMEOUT_S,
    hang_s: float = HANG_S,
    concurrency: int = 1,
) -> Scorecard:
    """Run Keel, then the baseline, on the same tasks and fault plan; return both reports."""
    if not 0 <= rate <= 1:
        raise ConfigError(f"fault rate must be within 0–1, got {rate}")
    if tasks < 1:
        raise ConfigError("at least one task")
    table = load_settings().price_table()
    if price_as not in table:
        raise ConfigError(f"no hosted price for {price_as!r}; known: {', '.join(sorted(table))}")
    price = table[price_as]
    work = arithmetic_tasks(tasks, seed=seed)
    plan = FaultPlan(rate=rate, kinds=tuple(kinds), seed=seed, hang_s=hang_s)
    faults_met: dict[str, dict[str, int]] = {}
    with ChaosServer(solve_task, faults=plan) as server, tempfile.TemporaryDirectory() as tmp:
        keel_report = await run_keel(
            server,
            work,
            Path(tmp) / "home",
            price=price,
            client_timeout_s=client_timeout_s,
            concurrency=concurrency,
        )
        faults_met[keel_report.name] = dict(server.stats.faults)
        server.reset(plan)
        baseline = await run_baseline(
            server, work, price=price, client_timeout_s=client_timeout_s, concurrency=concurrency
        )
        faults_met[baseline.name] = dict(server.stats.faults)
    return Scorecard(plan, price_as, client_timeout_s, [keel_report, baseline], faults_met)


def print_scorecard(
    tasks: int, rate: float, faults: str | None, seed: int, price_as: str, as_json: bool, out: Any
) -> None:
    """`keel eval`: run the scorecard and print it (a rich table, or one JSON object)."""
    import json
    import sys

    from rich.table import Table

    card = asyncio.run(
        scorecard(tasks=tasks, rate=rate, kinds=parse_kinds(faults), seed=seed, price_as=price_as)
    )
    if as_json:
        sys.stdout.write(json.dumps(card.to_dict()) + "\n")
        return
    table = Table(show_edge=False, header_style="bold")
    table.add_column("metric")
    for report in card.reports:
        table.add_column(report.name, justify="right")
    rows = [r.row() for r in card.reports]
    cells = [
        ("success", lambda r: f"{r['success']:.1f} %"),
        ("availability", lambda r: f"{r['availability']:.1f} %"),
        ("degraded (fallback answers)", lambda r: f"{r['degraded']:.1f} %"),
        ("error recovery", lambda r: f"{r['recovery']:.1f} % of {r['faulted']:.0f}"),
        (f"mean cost / run ({price_as})", lambda r: f"${r['cost']:.6f}"),
        ("cost / successful run", lambda r: f"${r['cost_per_success']:.6f}"),
        ("P50 latency", lambda r: f"{r['p50']:.3f} s"),
        ("P99 latency", lambda r: f"{r['p99']:.3f} s"),
        ("model calls / run", lambda r: f"{r['calls']:.2f}"),
    ]
    for label, fmt in cells:
        table.add_row(label, *(fmt(r) for r in rows))
    out.print(
        f"{tasks} tasks · {rate:.0%} faults ({', '.join(card.plan.kinds)}) · seed {seed} · "
        f"client timeout {card.client_timeout_s:g}s",
        highlight=False,
    )
    out.print(table)
