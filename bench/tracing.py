"""What LangSmith tracing costs a run: wall time with a 200 ms model, and CPU per run.

```bash
.venv/bin/python bench/tracing.py                 # about a minute
.venv/bin/python bench/tracing.py --sequential 5 --concurrent 100 --rounds 2
```
Every mode runs the same agent (the `scripted:sales` policy: three model calls, two tools)
with a model that waits `--delay` seconds per call, on a memory saver, in this process;
the untraced baseline is measured in the same process, interleaved with the traced modes.
Traces go over real HTTP to a LangSmith stand-in in another process on 127.0.0.1, so the
sender's CPU is counted here and the receiver's is not. Like every LangSmith deployment, the
stand-in offers zstd run compression, so the client sends compressed batches; `--no-zstd`
measures its uncompressed multipart fallback (a server without the flag). CPU is
`time.process_time()` over a batch of concurrent runs, after the client has flushed what
the batch sent.

Modes:
- `baseline`: no tracing.
- `langchain`: LangChain/LangGraph's own `LangChainTracer` (what `LANGSMITH_TRACING=true`
  gives any LangGraph app): a post when each run starts, a patch when it ends.
- `keel-full`: Keel's tracer, everything sent, full payloads.
- `keel-light`: Keel's tracer, everything sent, light payloads (the default).
- `keel-sampled`: light payloads, 10 % of clean runs (failed/degraded runs always kept).

`--instructions` counts instead of timing (what load cannot move): each mode's runs, one at a
time, the model without delay, in two processes under `valgrind --tool=callgrind` (3 warm-up
runs then `--low` runs, and 3 then `--high`); the difference of their totals over
`high - low` is the instructions of one run, the client's sender thread included (the
stand-in runs outside valgrind). A few minutes per mode.
```bash
.venv/bin/python bench/tracing.py --instructions --modes baseline keel-light
```
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from keel import AgentRuntime, load_settings, open_agent
from keel.observability.logs import configure_logging
from keel.observability.tracing import Tracing, pin_sender
from keel.testing import FunctionModel
from keel.testing.policies import POLICIES

SINK_FLAGS: list[str] = []
"""`["--no-zstd"]` with `--no-zstd`: the stand-in offers no run compression."""
QUESTION = "Which 3 products had the highest revenue last month, and what was their total?"
MODES = ("baseline", "langchain", "keel-full", "keel-light", "keel-sampled")


class SlowModel(FunctionModel):
    """The scripted sales model, taking `delay` seconds per call like a hosted model."""

    delay: float = 0.2

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(self.delay)
        return self._reply(messages, stop, **kwargs)


class LangChainTracing(Tracing):
    """LangChain's stock tracer, as LangGraph uses it when `LANGSMITH_TRACING=true`."""

    def callbacks(self, metadata: Any = None) -> list[Any]:
        from langchain_core.tracers.langchain import LangChainTracer

        return [LangChainTracer(client=self.client, project_name="bench")]


@dataclass
class Sink:
    """A LangSmith stand-in in its own process."""

    proc: subprocess.Popen[str]
    url: str

    @classmethod
    def start(cls) -> Sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "keel.testing.langsmith_capture", *SINK_FLAGS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        return cls(proc, proc.stdout.readline().strip())

    def stop(self) -> dict[str, int]:
        out, _ = self.proc.communicate(input="", timeout=30)
        result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return result


def make_client(url: str) -> Any:
    from langsmith import Client

    return Client(api_url=url, api_key="lsv2_bench_0000000000000000", timeout_ms=(2000, 10000))


def tracing_for(mode: str, client: Any, seed: int) -> Tracing:
    import random

    from keel.observability import TracePolicy

    if mode == "baseline":
        return Tracing(enabled=False)
    if mode == "langchain":
        return LangChainTracing(enabled=True, client=client)
    payloads: Literal["full", "light"] = "full" if mode == "keel-full" else "light"
    rate = 0.1 if mode == "keel-sampled" else 1.0
    policy = TracePolicy(sample_rate=rate, payloads=payloads, rng=random.Random(seed))
    return Tracing(enabled=True, client=client, project="bench", policy=policy)


@dataclass
class Measure:
    wall_per_run: list[float] = field(default_factory=list)
    cpu_per_run: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)
    requests: int = 0
    bytes: int = 0
    runs_sent: int = 0
    runs: int = 0


async def one_round(
    agent: AgentRuntime, mode: str, sequential: int, concurrent: int, m: Measure
) -> None:
    client = agent.tracing.client
    for _ in range(sequential):
        started = time.perf_counter()
        result = await agent.arun(QUESTION)
        m.wall_per_run.append(time.perf_counter() - started)
        assert result.success, result.error
    if client is not None:
        await asyncio.to_thread(client.flush, 60)
    cpu, wall = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(agent.arun(QUESTION) for _ in range(concurrent)))
    if client is not None:
        await asyncio.to_thread(client.flush, 60)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(r.success for r in results)
    m.cpu_per_run.append(cpu / concurrent)
    m.throughput.append(concurrent / wall)
    m.runs += sequential + concurrent


def bench_settings() -> Any:
    """Every mode's settings: the sales policy on a memory saver in a fresh home, no cache,
    tracing set per mode on the agent."""
    return load_settings(
        model="scripted:sales",
        checkpoint_url="memory://",
        home=Path(tempfile.mkdtemp(prefix="keel-bench-")),
        observability={"tracing": "off", "log_format": "json"},
        cache={"backend": "none"},
    )


async def bench(args: argparse.Namespace, devnull: Any) -> dict[str, Measure]:
    settings = bench_settings()
    configure_logging(settings, stream=devnull)
    measures = {mode: Measure() for mode in args.modes}
    sinks = {mode: Sink.start() for mode in args.modes if mode != "baseline"}
    clients = {mode: make_client(sink.url) for mode, sink in sinks.items()}
    pins = [pin_sender(c) for c in clients.values()]  # see `pin_sender`
    model = SlowModel(fn=POLICIES["sales"], model_name="scripted:sales", delay=args.delay)
    async with open_agent(settings, model=model) as agent:
        await agent.arun(QUESTION)  # warm-up: imports, sample database, caches
        for round_ in range(args.rounds):
            for mode in args.modes:
                agent.tracing = tracing_for(mode, clients.get(mode), seed=round_)
                await one_round(agent, mode, args.sequential, args.concurrent, measures[mode])
        agent.tracing = Tracing(enabled=False)
    for mode, sink in sinks.items():
        clients[mode].close(timeout=10)
        summary = sink.stop()
        m = measures[mode]
        m.requests, m.bytes = summary["requests"], summary["bytes"]
        m.runs_sent = summary["runs"]
    del pins
    return measures


def report(measures: dict[str, Measure], args: argparse.Namespace) -> str:
    base = measures["baseline"]
    base_wall = statistics.median(base.wall_per_run)
    base_cpu = statistics.median(base.cpu_per_run)
    base_tput = statistics.median(base.throughput)
    lines = [
        f"model delay {args.delay * 1000:.0f} ms/call, 3 calls + 2 tools per run; "
        f"{args.sequential} sequential + {args.concurrent} concurrent runs per mode "
        f"x {args.rounds} rounds",
        "",
        f"{'mode':<14}{'wall/run':>10}{'ratio':>8}{'cpu/run':>10}{'ratio':>8}"
        f"{'runs/s':>9}{'ratio':>8}{'runs sent':>11}{'KB/run':>9}",
    ]
    for mode, m in measures.items():
        wall = statistics.median(m.wall_per_run)
        cpu = statistics.median(m.cpu_per_run)
        tput = statistics.median(m.throughput)
        kb = m.bytes / 1024 / m.runs if m.runs else 0.0
        lines.append(
            f"{mode:<14}{wall * 1000:>8.0f}ms{wall / base_wall:>8.3f}"
            f"{cpu * 1000:>8.1f}ms{cpu / base_cpu:>8.2f}"
            f"{tput:>9.1f}{tput / base_tput:>8.2f}{m.runs_sent:>11}{kb:>9.1f}"
        )
    return "\n".join(lines)


WARM_UP = 3


async def child(mode: str, runs: int, devnull: Any) -> None:
    """`WARM_UP` runs, then `runs` more, one at a time, in `mode` (counted under callgrind)."""
    settings = bench_settings()
    sink = Sink.start() if mode != "baseline" else None
    client = make_client(sink.url) if sink is not None else None
    pins = pin_sender(client) if client is not None else ()
    model = SlowModel(fn=POLICIES["sales"], model_name="scripted:sales", delay=0.0)
    configure_logging(settings, stream=devnull)
    async with open_agent(settings, model=model) as agent:
        agent.tracing = tracing_for(mode, client, seed=0)
        for _ in range(WARM_UP + runs):
            assert (await agent.arun(QUESTION)).success
        if client is not None:
            client.flush(60)
        agent.tracing = Tracing(enabled=False)
    if client is not None and sink is not None:
        client.close(timeout=10)
        sink.stop()
    del pins


def instructions(mode: str, runs: int) -> int:
    """The instructions of one process running `mode` `WARM_UP + runs` times."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
    from bench.instructions import callgrind_total

    return callgrind_total([str(Path(__file__).resolve()), *SINK_FLAGS, "--child", mode, str(runs)])


def count(args: argparse.Namespace) -> str:
    span = args.high - args.low
    per_run = {
        mode: (instructions(mode, args.high) - instructions(mode, args.low)) / span
        for mode in args.modes
    }
    lines = [f"instructions per run (callgrind; ({args.high} - {args.low} runs) / {span})"]
    for mode, n in per_run.items():
        lines.append(f"  {mode:<14}{n / 1e6:8.1f} M   / baseline {n / per_run['baseline']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2, help="model seconds per call")
    parser.add_argument("--sequential", type=int, default=3, help="runs one at a time per round")
    parser.add_argument("--concurrent", type=int, default=40, help="runs at once per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    parser.add_argument("--low", type=int, default=3, help="--instructions: short process runs")
    parser.add_argument("--high", type=int, default=13, help="--instructions: long process runs")
    parser.add_argument(
        "--no-zstd",
        action="store_true",
        help="the stand-in offers no run compression (the client's uncompressed fallback)",
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.no_zstd:
        SINK_FLAGS.append("--no-zstd")
    if args.child:
        with open(os.devnull, "w") as devnull:
            asyncio.run(child(args.child[0], int(args.child[1]), devnull))
        return
    if "baseline" not in args.modes:
        args.modes.insert(0, "baseline")
    started = time.perf_counter()
    if args.instructions:
        if shutil.which("valgrind") is None or args.high <= args.low:
            parser.error("--instructions needs valgrind on the PATH and --high > --low")
        print(count(args))
    else:
        with open(os.devnull, "w") as devnull:
            measures = asyncio.run(bench(args, devnull))
        print(report(measures, args))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"\n(took {time.perf_counter() - started:.0f} s; load average {load})")


if __name__ == "__main__":
    main()
