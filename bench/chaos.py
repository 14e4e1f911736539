"""Keel vs a plain `langchain.agents.create_agent` agent under a seeded 30 % fault mix.

```bash
.venv/bin/python bench/chaos.py              # 200 tasks, 30 % faults, seed 7
.venv/bin/python bench/chaos.py --tasks 300 --rate 0.3 --seed 11
```
Both agents talk to the same chaos server (`keel.testing.chaos`) over real HTTP through
`langchain-openai`, with the same calculator tool and the same client timeout, one run at a
time in this process. The server's faults are a hash of (seed, question, turn, attempt), so
both meet the same fault sequence for the same requests. Each task's answer is computed
independently (`keel.testing.chaos_tasks`); a run succeeds when its answer contains it.

The baseline is `create_agent` as a developer would write it: `ChatOpenAI` with its default
retries (the OpenAI SDK retries 429/5xx/timeouts/connection errors twice, honouring
`Retry-After`), and LangChain's own tool error handling.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.tools import tool as lc_tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from keel.config import load_settings
from keel.observability.logs import configure_logging
from keel.service.runner import open_agent
from keel.testing.chaos import ChaosServer, FaultPlan
from keel.testing.chaos_tasks import Task, arithmetic_tasks, is_correct, solve_task
from tools import calculator
from tools.calculator import evaluate, format_number
from tools.registry import ToolRegistry

CLIENT_TIMEOUT_S = 1.0
"""Both agents give up on a model request after this long (a `hang` lasts longer)."""
HANG_S = 10.0


@dataclass
class Outcome:
    ok: bool
    seconds: float
    model_calls: int
    faults: int


@dataclass
class Report:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        n = len(self.outcomes)
        faulted = [o for o in self.outcomes if o.faults]
        times = sorted(o.seconds for o in self.outcomes)
        return {
            "runs": n,
            "success": 100 * sum(o.ok for o in self.outcomes) / n,
            "recovery": 100 * sum(o.ok for o in faulted) / len(faulted) if faulted else 100.0,
            "faulted": len(faulted),
            "p50": statistics.median(times),
            "p99": times[min(n - 1, int(0.99 * n))],
            "calls": statistics.mean(o.model_calls for o in self.outcomes),
        }


async def run_keel(server: ChaosServer, tasks: list[Task], home: Path) -> Report:
    settings = load_settings(
        model="openai:chaos",
        openai_base_url=server.base_url,
        openai_api_key="bench",
        checkpoint_url="memory://",
        home=home,
        limits={"model_timeout_s": CLIENT_TIMEOUT_S, "max_model_attempts": 5, "max_repairs": 4},
        retry={"initial_s": 0.05, "max_s": 1.0},
        observability={"log_level": "error"},
    )
    configure_logging(settings)
    report = Report("Keel")
    async with open_agent(settings, tools=ToolRegistry.of([calculator])) as agent:

        async def one(task: Task) -> bool:
            result = await agent.arun(task.question)
            return result.success and is_correct(task, result.output)

        await _measure(server, tasks, one, report)
    return report


@lc_tool
def lc_calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. 2*(3+4)."""
    return format_number(evaluate(expression))


lc_calculator.name = "calculator"


async def run_baseline(server: ChaosServer, tasks: list[Task]) -> Report:
    model = ChatOpenAI(
        model="chaos",
        base_url=server.base_url,
        api_key=SecretStr("bench"),
        timeout=CLIENT_TIMEOUT_S,
        temperature=0,
    )
    agent = create_agent(model, tools=[lc_calculator], system_prompt="Use the tools.")
    report = Report("create_agent")

    async def one(task: Task) -> bool:
        try:
            state = await agent.ainvoke({"messages": [{"role": "user", "content": task.question}]})
        except Exception:
            return False
        answer = state["messages"][-1]
        return not getattr(answer, "tool_calls", None) and is_correct(task, str(answer.content))

    await _measure(server, tasks, one, report)
    return report


async def _measure(
    server: ChaosServer,
    tasks: list[Task],
    one: Callable[[Task], Awaitable[bool]],
    report: Report,
) -> None:
    for task in tasks:
        started = time.perf_counter()
        ok = await one(task)
        report.outcomes.append(
            Outcome(
                ok=ok,
                seconds=time.perf_counter() - started,
                model_calls=server.stats.requests_by_question[task.question],
                faults=len(server.stats.by_question.get(task.question, [])),
            )
        )


def table(reports: list[Report], plan: FaultPlan) -> str:
    lines = [
        f"{len(reports[0].outcomes)} tasks, {plan.rate:.0%} faults (seed {plan.seed}), "
        f"client timeout {CLIENT_TIMEOUT_S:g}s",
        "",
        "| system | success | recovery (faulted runs) | P50 s | P99 s | mean model calls |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        row = r.row()
        lines.append(
            f"| {r.name} | {row['success']:.1f} % | {row['recovery']:.1f} % "
            f"({row['faulted']:.0f}) | {row['p50']:.3f} | {row['p99']:.3f} | {row['calls']:.2f} |"
        )
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    tasks = arithmetic_tasks(args.tasks, seed=args.seed)
    plan = FaultPlan(rate=args.rate, seed=args.seed, hang_s=HANG_S)
    with ChaosServer(solve_task, faults=plan) as server, tempfile.TemporaryDirectory() as tmp:
        keel_report = await run_keel(server, tasks, Path(tmp) / "home")
        keel_faults = dict(server.stats.faults)
        server.reset(plan)
        baseline = await run_baseline(server, tasks)
        base_faults = dict(server.stats.faults)
    print(table([keel_report, baseline], plan))
    print(f"\nfaults met — Keel: {keel_faults}\nfaults met — create_agent: {base_faults}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
