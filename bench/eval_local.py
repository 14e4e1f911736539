"""Eval of the embedded local models: the generalisation set, tuning and held-back halves.

    .venv/bin/python -m bench.eval_local                                   # both halves
    .venv/bin/python -m bench.eval_local --model local:qwen2.5-coder-0.5b --half held-back
    .venv/bin/python -m bench.eval_local --limit 6 --json runs.json       # 6 a half
    .venv/bin/python -m bench.eval_local --set original                   # the 22 tuned-on ones
    KEEL_SQL__EXAMPLES=off .venv/bin/python -m bench.eval_local --limit 26  # no SQL examples
    .venv/bin/python -m bench.eval_local --half held-back --seed 22        # a fresh draw

Asks each question of `keel.evals.generalisation` (≥ 150 generated over the sample database,
truths computed in Python) once per model through the real agent (fresh thread, in-memory
checkpoints, the settings' own limits unless `--model-timeout` says otherwise) and prints,
per model and half: success, median, P95 and slowest seconds, mean iterations, and the
failure kind of every miss — the checker's (wrong number, wrong row/name, states the
opposite, a trap such as "applied the completed-only rule", …) or the run's (loop/iteration
limit, model timeout, malformed, …). `--limit N` takes the first N of each half, kinds taken
in turn so a small run still spans the kinds. The load average is printed with the figures:
a loaded machine makes every time longer. Tune prompts on the tuning half only; the sample
database's SQL examples (`keel.tools.sample_db_examples`) are written from it, so with them
on the tuning half's score says little (its questions are the examples' own).
`--seed` draws other values into the same templates and halves: questions no one has read,
the check for a change informed by an earlier run's misses.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bench.eval_questions import is_correct as original_is_correct
from bench.eval_questions import questions as original_questions
from keel import load_settings, open_agent
from keel.evals.generalisation import HALVES, Expected, GenQuestion, check, generate
from keel.models.local import local_models
from keel.observability.logs import configure_logging
from keel.tools.sample_db import ensure_sample_db
from keel.types import RunResult

RUN_FAILURES = {
    "iteration_limit": "loop/iteration limit",
    "model_timeout": "model timeout",
    "deadline_exceeded": "run deadline",
    "malformed_output": "malformed",
    "ungrounded_answer": "ungrounded answer",
    "output_truncated": "malformed",
}
"""A run's error code (or one met on the way to a degraded answer) → the failure kind."""


@dataclass(frozen=True)
class Asked:
    """One question as the harness asks it (a generated one or one of the original 22)."""

    id: str
    kind: str
    half: str
    text: str
    expected: Expected | None = None
    original: Any = None
    """`bench.eval_questions.Expected` for `--set original`."""

    def judge(self, reply: str) -> str | None:
        """None when `reply` is right, else the checker's failure kind."""
        if self.expected is not None:
            return check(reply, self.expected).failure
        if not reply.strip():
            return "no answer"
        return None if original_is_correct(reply, self.original) else "wrong (original checker)"


@dataclass
class Run:
    model: str
    id: str
    kind: str
    half: str
    question: str
    correct: bool
    failure: str | None
    seconds: float
    iterations: int
    repairs: int = 0
    """Repair edges the graph took (malformed output, ungrounded answers, …)."""
    error_codes: list[str] = field(default_factory=list)
    """Error codes of the run and of its trace steps (a degraded answer keeps its cause)."""
    load1: float = 0.0
    output: str = ""
    queries: list[str] = field(default_factory=list)
    """The SQL the run executed, in order (what to read when a miss is a wrong query)."""
    verifier: str | None = None
    """The planned flow's verifier, when it replaced the model's answer with the rows: what
    that did to this question — `fixed` (the model's answer was wrong, the rows right),
    `broke`, `both wrong` or `both right` (None: it kept the model's answer, or no plan)."""


def classify(asked: Asked, result: RunResult) -> str | None:
    """The failure kind of a run, None when its answer is right.

    A run that ended in an error is its error's kind. A wrong answer given after the run
    hit its iteration limit or a model timeout (the fallback's direct answer) counts as that
    limit, since the limit is why there was no grounded answer; a right one counts as right.
    """
    codes = _codes(result)
    if not result.success:
        code = result.error_code or result.metadata.error_code or "unknown"
        return RUN_FAILURES.get(code, f"error: {code}")
    failure = asked.judge(result.output)
    if failure is None:
        return None
    for code in ("model_timeout", "iteration_limit", "deadline_exceeded"):
        if code in codes:
            return RUN_FAILURES[code]
    return failure


_REJECTED = re.compile(r"^plan: verifier rejected (?P<answer>'.*'|\".*\") \(")


def verifier_effect(asked: Asked, result: RunResult) -> str | None:
    """What the verifier's replacement of the model's answer did (see `Run.verifier`)."""
    for step in result.metadata.trace:
        found = _REJECTED.match(str(step.get("thought") or ""))
        if step.get("node") == "reason" and found:
            model_right = asked.judge(ast.literal_eval(found["answer"])) is None
            rows_right = result.success and asked.judge(result.output) is None
            return {
                (False, True): "fixed",
                (True, False): "broke",
                (False, False): "both wrong",
                (True, True): "both right",
            }[(model_right, rows_right)]
    return None


def _queries(result: RunResult) -> list[str]:
    found = []
    for step in result.metadata.trace:
        args = step.get("action_input")
        if step.get("node") == "act" and step.get("action") == "sql_query":
            found.append(str(args.get("query", "")) if isinstance(args, dict) else str(args))
    return found


def _codes(result: RunResult) -> list[str]:
    found = [str(s["error_code"]) for s in result.metadata.trace if s.get("error_code")]
    if result.error_code:
        found.append(str(result.error_code))
    return list(dict.fromkeys(found))


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def interleave(questions: Sequence[GenQuestion]) -> list[GenQuestion]:
    """Kinds in turn (each kind's questions in id order), so a `--limit` spans the kinds."""
    by_kind: dict[str, list[GenQuestion]] = defaultdict(list)
    for q in questions:
        by_kind[q.kind].append(q)
    lanes = [sorted(qs, key=lambda q: q.id) for _, qs in sorted(by_kind.items())]
    out: list[GenQuestion] = []
    for depth in range(max((len(lane) for lane in lanes), default=0)):
        out += [lane[depth] for lane in lanes if depth < len(lane)]
    return out


def select(
    db: Path, halves: Sequence[str], limit: int, which: str = "generalisation", seed: int = 21
) -> list[Asked]:
    """The questions to ask: each chosen half in turn, the first `limit` of each (0: all).
    `seed` draws the generalisation set's values (21: the set the examples were written
    from; another seed: the same templates and halves, questions nobody has read)."""
    if which == "original":
        asked = [
            Asked(f"original.{i}", "original", "tuning", q.text, original=q.expected)
            for i, q in enumerate(original_questions(db, date.today()), start=1)
        ]
        return asked[:limit] if limit else asked
    every = generate(db, seed=seed)
    out: list[Asked] = []
    for half in halves:
        chosen = interleave([q for q in every if q.half == half])
        out += [
            Asked(q.id, q.kind, q.half, q.text, expected=q.expected)
            for q in (chosen[:limit] if limit else chosen)
        ]
    return out


async def eval_model(
    spec: str,
    asked: Sequence[Asked],
    home: Path,
    *,
    model_timeout_s: float | None = None,
    echo: bool = True,
) -> list[Run]:
    """Ask every question once through the real agent; one `Run` each."""
    limits: dict[str, float] = {}
    if model_timeout_s:
        limits = {
            "model_timeout_s": model_timeout_s,
            "iteration_timeout_s": max(120.0, model_timeout_s),
            "run_timeout_s": max(600.0, 4 * model_timeout_s),
        }
    settings = load_settings(model=spec, home=home, checkpoint_url="memory://", limits=limits)
    runs = []
    async with open_agent(settings) as agent:
        for number, question in enumerate(asked, start=1):
            load1 = os.getloadavg()[0]
            started = time.perf_counter()
            try:
                result = await agent.arun(question.text)
            except Exception as exc:  # a harness must outlive one broken run
                seconds = time.perf_counter() - started
                run = Run(spec, question.id, question.kind, question.half, question.text,
                          False, f"exception: {type(exc).__name__}", round(seconds, 2), 0,
                          load1=load1, output=str(exc)[:500])  # fmt: skip
            else:
                seconds = time.perf_counter() - started
                failure = classify(question, result)
                run = Run(
                    model=spec,
                    id=question.id,
                    kind=question.kind,
                    half=question.half,
                    question=question.text,
                    correct=failure is None,
                    failure=failure,
                    seconds=round(seconds, 2),
                    iterations=int(result.metadata.iterations),
                    repairs=sum(1 for s in result.metadata.trace if s.get("signal") == "repair"),
                    error_codes=_codes(result),
                    load1=load1,
                    output=result.output,
                    queries=_queries(result),
                    verifier=verifier_effect(question, result),
                )
            runs.append(run)
            if echo:
                mark = "ok " if run.correct else "BAD"
                why = "" if run.correct else f"  [{run.failure}]"
                print(
                    f"  [{number:3}/{len(asked)}] {mark} {run.seconds:6.1f}s "
                    f"{question.id:40.40} {why}",
                    flush=True,
                )
    return runs


def summary(runs: Sequence[Run]) -> dict[str, Any]:
    """The figures of a set of runs (one model, one half)."""
    seconds = [r.seconds for r in runs]
    return {
        "runs": len(runs),
        "success": 100 * sum(r.correct for r in runs) / len(runs),
        "median_s": statistics.median(seconds),
        "p95_s": _p95(seconds),
        "max_s": max(seconds),
        "mean_iterations": statistics.fmean(r.iterations for r in runs),
        "repairs": sum(r.repairs for r in runs),
        "failures": dict(Counter(r.failure for r in runs if r.failure).most_common()),
        "verifier": dict(Counter(r.verifier for r in runs if r.verifier).most_common()),
        "by_kind": {
            kind: f"{sum(r.correct for r in rs)}/{len(rs)}"
            for kind, rs in sorted(_group(runs, lambda r: r.kind).items())
        },
    }


def _group(runs: Sequence[Run], key: Any) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        out[key(r)].append(r)
    return out


def report(runs: Sequence[Run], load_before: Sequence[float], load_after: Sequence[float]) -> str:
    """The Markdown the benchmark prints: a row per model and half, the misses, the slowest."""
    lines = [
        f"load average before {_load(load_before)}, after {_load(load_after)} "
        f"({os.cpu_count()} CPUs)",
        "",
        "| model | half | runs | success | median s | P95 s | max s | mean iterations | repairs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups = _group(runs, lambda r: f"{r.model}\0{r.half}")
    for key, rs in groups.items():
        model, half = key.split("\0")
        s = summary(rs)
        lines.append(
            f"| `{model}` | {half} | {s['runs']} | {s['success']:.0f} % | {s['median_s']:.1f} "
            f"| {s['p95_s']:.1f} | {s['max_s']:.1f} | {s['mean_iterations']:.2f} "
            f"| {s['repairs']} |"
        )
    for key, rs in groups.items():
        model, half = key.split("\0")
        s = summary(rs)
        kinds = ", ".join(f"{k} {v}" for k, v in s["by_kind"].items())
        lines += ["", f"{model} · {half}: by kind {kinds}"]
        if s["failures"]:
            lines.append("  misses: " + ", ".join(f"{k} ×{v}" for k, v in s["failures"].items()))
        if s["verifier"]:
            effects = ", ".join(f"{k} ×{v}" for k, v in s["verifier"].items())
            lines.append(f"  verifier answered from the rows: {effects}")
        for r in rs:
            if not r.correct:
                said = " ".join(r.output.split())[:110]
                lines.append(f"  - {r.id}: {r.failure} — {said!r}")
    slowest = sorted(runs, key=lambda r: r.seconds, reverse=True)[:5]
    lines += ["", "slowest five:"]
    lines += [f"  {r.seconds:6.1f}s {r.model} {r.id} (load {r.load1:.1f})" for r in slowest]
    return "\n".join(lines)


def _load(values: Sequence[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    installed = [m.spec for m in local_models() if m.installed]
    parser.add_argument(
        "--model", action="append", dest="models", help="model spec (repeatable; default: "
        "every installed local model)"
    )  # fmt: skip
    parser.add_argument("--models", nargs="+", dest="models", help=argparse.SUPPRESS)
    parser.add_argument("--half", choices=("tuning", "held-back", "both"), default="both")
    parser.add_argument("--limit", type=int, default=0, help="the first N of each half")
    parser.add_argument("--set", choices=("generalisation", "original"), default="generalisation")
    parser.add_argument(
        "--json", nargs="?", const="-", metavar="FILE",
        help="also write the runs and figures as JSON (to stdout when no FILE)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=21,
        help="the generalisation set's draw (21: the one tuned on; another: a fresh draw of "
        "the same templates and halves)",
    )  # fmt: skip
    parser.add_argument("--home", type=Path, default=Path(".keel"))
    parser.add_argument(
        "--model-timeout", type=float, help="seconds per model call (default: the settings')"
    )
    args = parser.parse_args(argv)
    models = args.models or installed
    if not models:
        parser.error("no local model installed: pass --model SPEC")
    if args.limit < 0:
        parser.error("--limit must be 0 (all) or more")
    configure_logging(load_settings())  # log lines to stderr; stdout is the report
    halves = HALVES if args.half == "both" else (args.half,)
    asked = select(ensure_sample_db(args.home), halves, args.limit, args.set, args.seed)
    to_json = args.json == "-"
    out = sys.stderr if to_json else sys.stdout
    load_before = os.getloadavg()
    every: list[Run] = []
    for spec in models:
        which = "the original 22" if args.set == "original" else ", ".join(halves)
        print(f"{spec}: {len(asked)} questions ({which})", file=out, flush=True)
        every += asyncio.run(
            eval_model(spec, asked, args.home, model_timeout_s=args.model_timeout, echo=not to_json)
        )
    load_after = os.getloadavg()
    print(report(every, load_before, load_after), file=out)
    if args.json:
        figures = {
            f"{model} {half}": summary(rs)
            for model, by_half in _group(every, lambda r: r.model).items()
            for half, rs in _group(by_half, lambda r: r.half).items()
        }
        payload = {
            "load_before": list(load_before),
            "load_after": list(load_after),
            "cpus": os.cpu_count(),
            "seed": args.seed,
            "figures": figures,
            "runs": [asdict(r) for r in every],
        }
        text = json.dumps(payload, indent=1)
        if to_json:
            print(text)
        else:
            Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
