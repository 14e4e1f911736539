"""Eval of the embedded local models on the sample database and the calculator.

    .venv/bin/python -m bench.eval_local                       # every installed local model
    .venv/bin/python -m bench.eval_local --models local:qwen2.5-coder-0.5b --limit 5

Runs each question of `bench.eval_questions` once per model through the real agent (fresh
thread, in-memory checkpoints) and prints, per model: success rate (correct answers), median
and P95 seconds per run, mean iterations, and malformed-output repairs (all repair edges the
graph took, ungrounded answers included). `--json FILE` also writes every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from bench.eval_questions import Question, is_correct, questions
from keel import load_settings, open_agent
from keel.models.local import local_models
from keel.observability.logs import configure_logging
from keel.tools.sample_db import ensure_sample_db


@dataclass
class Run:
    model: str
    question: str
    correct: bool
    finished: bool
    seconds: float
    iterations: int
    repairs: int
    output: str


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def eval_model(spec: str, asked: list[Question], home: Path) -> list[Run]:
    settings = load_settings(
        model=spec,
        home=home,
        checkpoint_url="memory://",
        limits={"iteration_timeout_s": 600, "model_timeout_s": 600, "run_timeout_s": 1800},
    )
    runs = []
    async with open_agent(settings) as agent:
        for number, question in enumerate(asked, start=1):
            started = time.perf_counter()
            result = await agent.arun(question.text)
            seconds = time.perf_counter() - started
            trace = result.metadata.trace
            run = Run(
                model=spec,
                question=question.text,
                correct=result.success and is_correct(result.output, question.expected),
                finished=result.success,
                seconds=round(seconds, 2),
                iterations=int(result.metadata.iterations),
                repairs=sum(1 for s in trace if s.get("signal") == "repair"),
                output=result.output,
            )
            runs.append(run)
            mark = "ok " if run.correct else "BAD"
            print(f"  [{number:2}/{len(asked)}] {mark} {seconds:6.1f}s  {question.text[:60]}")
    return runs


def summary(runs: list[Run]) -> dict[str, float]:
    seconds = [r.seconds for r in runs]
    return {
        "runs": len(runs),
        "success": 100 * sum(r.correct for r in runs) / len(runs),
        "median_s": statistics.median(seconds),
        "p95_s": _p95(seconds),
        "mean_iterations": statistics.fmean(r.iterations for r in runs),
        "repairs": sum(r.repairs for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    installed = [m.spec for m in local_models() if m.installed]
    parser.add_argument("--models", nargs="+", default=installed)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--json", type=Path, help="write every run to this file")
    parser.add_argument("--home", type=Path, default=Path(".keel"))
    args = parser.parse_args()
    configure_logging(load_settings())  # log lines to stderr; stdout is the table

    asked = questions(ensure_sample_db(args.home), date.today())
    if args.limit:
        asked = asked[: args.limit]
    every: list[Run] = []
    table = [
        "| model | runs | success | median s | P95 s | mean iterations | repairs |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in args.models:
        print(f"{spec}: {len(asked)} questions")
        runs = asyncio.run(eval_model(spec, asked, args.home))
        every += runs
        s = summary(runs)
        table.append(
            f"| `{spec}` | {s['runs']:.0f} | {s['success']:.0f} % | {s['median_s']:.1f} | "
            f"{s['p95_s']:.1f} | {s['mean_iterations']:.2f} | {s['repairs']:.0f} |"
        )
    print("\n".join(table))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in every], indent=1))


if __name__ == "__main__":
    main()
