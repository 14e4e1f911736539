"""Many runs at once: Keel's throughput and memory per run against raw LangGraph's.

```bash
nice -n 10 .venv/bin/python -m bench.concurrency                     # memory and Postgres
nice -n 10 .venv/bin/python -m bench.concurrency --savers memory --runs 200 --repeat 1
nice -n 10 .venv/bin/python -m bench.concurrency --savers memory --together --repeat 4
nice -n 10 .venv/bin/python -m bench.concurrency --savers memory --pair textbook textbook
```
Both sides run `bench.workload` (six scripted model calls, five tool calls on the sample
database, `durability="sync"`), Keel with its default safeguards and raw LangGraph's
textbook loop (model node, `ToolNode`, `tools_condition`) on the stock saver; every model
call first waits `--latency-ms` (200 ms: a provider's latency), so a run is mostly waiting
and the process's CPU decides how many runs fit in a second.

Each measurement is a fresh process (`--child`), so one side's memory never counts for the
other: it opens its side on its own database, warms up with a few runs, then starts
`--runs` runs at once and reports

- throughput: runs finished per second of wall time, from the first start to the last end;
- RSS per run: the process's peak resident memory during the batch (`VmHWM`, reset before
  it) minus its resident memory before it, divided by the runs. With the memory saver this
  includes the checkpoints the runs leave in memory, on both sides.

A child fails when any run did not end with the scripted answer after six model calls.
Keel's timeouts are set to an hour (`LIMITS`): still checked before every call, but long
enough for a thousand runs sharing a busy machine's CPU.
The sides alternate, `--repeat` times (default 3), and so does the side that goes first
(Keel then raw, raw then Keel, …): neither always meets the same part of a drifting
machine's minute. The ratios are printed per repeat and as their range and median, with the
load average.

`--pair textbook textbook` (any two of `bench.workload`'s sides) compares a side with
itself: identical work, so every ratio's distance from 1 is the bench's own spread on this
machine at that hour. Measure it next to a Keel / raw figure before reading a single repeat:
on the 2-core machine of 2026-12-07, raw against raw one after the other spread 0.74–1.16
over six repeats (median 0.94), as far as Keel against raw did that hour (0.84–1.21 over
five, median 0.97); run together, 0.99–1.02 over four.

`--together` runs each repeat's two children at the same time instead, each pinned to a core
of its own (`sched_setaffinity`), and swaps their cores every repeat. On a shared machine
whose speed drifts from one half-minute to the next, the two sides then share the drift
instead of meeting different halves of it: on the 2-core machine of 2026-12-07 the
alternating ratios spread 0.77–1.19 over nine repeats of the same code, the ratios run
together 0.90–0.95 over four. Each side has one core then, not two (its tool threads share
it), so its ratio answers the same question on a smaller machine; it needs two cores. Use
an even `--repeat`, so each side has each core as often: cores differ (core 0 takes the
interrupts). With `--savers postgres` the server's backends are not pinned: both sides'
share the two cores with the children.

`--gc service` gives both sides the collector settings `keel serve` and `keel worker` use
(`keel.runtime.gc_tuning`: first-generation threshold 50,000, start-up objects frozen once
the side is open and warm): with a thousand runs alive, full collections are a large part
of either side's CPU, and this shows the ratio without most of them. The default is
Python's own settings on both sides (a library user's process).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.graph_cpu import scratch_database
from bench.workload import SIDES as ALL_SIDES
from bench.workload import Side, new_thread, runner

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SAVERS = ("memory", "postgres")
PAIR: tuple[Side, Side] = ("keel", "textbook")
"""The two sides compared by default: Keel, then the textbook loop ("raw")."""
TITLES: dict[Side, str] = {"keel": "Keel", "textbook": "raw", "create_agent": "create_agent"}
WARM_UP = 10
LATENCY_MS = 200.0
"""What every model call waits by default (`--latency-ms`): a provider's latency."""
LIMITS = {
    "iteration_timeout_s": 3600.0,
    "model_timeout_s": 3600.0,
    "run_timeout_s": 3600.0,
    "tool_timeout_s": 3600.0,
}
"""Keel's timeouts stay on, an hour each: a thousand runs on a busy two-core machine take
minutes per iteration, and a run that hit its default 120 s iteration timeout would
degrade (fewer calls, not the same work as the raw side, which has no timeouts). A tool
call's timeout counts its wait for a tool thread too, which grows with the runs waiting."""
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ child: one side, one batch


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_bytes() -> int:
    """`VmHWM`: the peak resident memory since the last reset."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> bool:
    """Reset `VmHWM` to the current RSS (Linux 4.0+); False if not allowed here."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


async def sample_peak(stop: asyncio.Event, found: list[int]) -> None:
    """The fallback when `VmHWM` cannot be reset: RSS sampled every 20 ms."""
    while not stop.is_set():
        found.append(resident_bytes())
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def child(
    side: Side, url: str, runs: int, latency_s: float, home: Path, gc_mode: str = "default"
) -> dict[str, Any]:
    from keel.config import ObservabilitySettings, ServiceSettings
    from keel.observability.logs import configure_logging
    from keel.runtime.gc_tuning import freeze_startup_objects, tune_gc

    configure_logging(ObservabilitySettings(log_level="warning"))
    async with runner(side, url, home, latency_s=latency_s, limits=LIMITS) as run:
        await asyncio.gather(*(run(new_thread()) for _ in range(WARM_UP)))
        if gc_mode == "service":  # as `keel serve` / `keel worker` do after start-up
            tune_gc(ServiceSettings().gc_gen0_threshold)
            freeze_startup_objects()
        gc.collect()
        before = resident_bytes()
        hwm = reset_peak()
        stop, samples = asyncio.Event(), [before]
        sampler = None if hwm else asyncio.create_task(sample_peak(stop, samples))
        cpu, started, started_at = time.process_time(), time.perf_counter(), time.time()
        outcomes = await asyncio.gather(
            *(run(new_thread()) for _ in range(runs)), return_exceptions=True
        )
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        stop.set()
        if sampler is not None:
            await sampler
        peak = peak_bytes() if hwm else max(samples)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    return {
        "side": side,
        "runs": runs,
        "failed": len(failed),
        "first_failure": repr(failed[0])[:300] if failed else None,
        "wall_s": wall,
        "cpu_s": cpu,
        "throughput": runs / wall,
        "rss_per_run_kb": (peak - before) / runs / 1024,
        "peak_from": "VmHWM" if hwm else "sampled",
        "cpus": sorted(os.sched_getaffinity(0)),
        "batch_s": [started_at, started_at + wall],
    }


# ------------------------------------------------------------------ parent


async def measure(
    side: Side,
    saver: str,
    runs: int,
    latency_s: float,
    tmp: Path,
    gc_mode: str,
    cpu: int | None = None,
) -> dict[str, Any]:
    """One batch of `side` in a fresh process (on core `cpu` alone when given), on a store
    of its own."""
    home = tmp / f"{side}-{uuid.uuid4().hex[:6]}"
    if saver == "memory":
        return await asyncio.to_thread(
            spawn, side, "memory://", runs, latency_s, home, gc_mode, cpu
        )
    async with scratch_database(side) as url:
        return await asyncio.to_thread(spawn, side, url, runs, latency_s, home, gc_mode, cpu)


async def measure_pair(
    saver: str,
    runs: int,
    latency_s: float,
    tmp: Path,
    gc_mode: str,
    cores: tuple[int, int] | None,
    pair: tuple[Side, Side] = PAIR,
    second_first: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One batch of each side of `pair`, reported in `pair`'s order: one after the other
    (`cores` None; `pair[1]` first when `second_first`), or both at once, `pair[0]` on
    `cores[0]` and `pair[1]` on `cores[1]`."""
    if cores is None:
        order = (1, 0) if second_first else (0, 1)
        got = {i: await measure(pair[i], saver, runs, latency_s, tmp, gc_mode) for i in order}
        return got[0], got[1]
    first, second = await asyncio.gather(
        *(
            measure(s, saver, runs, latency_s, tmp, gc_mode, c)
            for s, c in zip(pair, cores, strict=True)
        )
    )
    return first, second


def two_cores() -> tuple[int, int]:
    """The first two cores this process may run on (`--together` needs two)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit(f"--together needs two cores; this process may use {cores}")
    return cores[0], cores[1]


def spawn(
    side: Side,
    url: str,
    runs: int,
    latency_s: float,
    home: Path,
    gc_mode: str,
    cpu: int | None = None,
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.concurrency", "--child", side, url, str(runs)]
    cmd += [str(latency_s), str(home), gc_mode, "" if cpu is None else str(cpu)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} child failed:\n{done.stderr[-3000:]}")
    return check(json.loads(done.stdout.strip().splitlines()[-1]))


def check(found: dict[str, Any]) -> dict[str, Any]:
    """A child's report, refused if any of its runs missed the scripted work."""
    if found["failed"]:
        side, failed = found["side"], found["failed"]
        raise RuntimeError(f"{side}: {failed} runs failed: {found['first_failure']}")
    return found


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if len(values) == 1 else f"{lo}–{hi}"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


async def main(
    savers: list[str],
    runs: int,
    latency_ms: float,
    repeat: int,
    gc_mode: str = "default",
    together: bool = False,
    pair: tuple[Side, Side] = PAIR,
) -> int:
    cores = two_cores() if together else None
    a, b = (TITLES[side] for side in pair)
    x, y = a.lower(), b.lower()  # as each repeat's line names them
    print(
        f"{runs} concurrent runs, {latency_ms:g} ms a model call; same work each side "
        f"(6 model calls, 5 tool calls, durability sync); {a} against {b}"
        + (" (the same side twice: the bench's own spread)" if pair[0] == pair[1] else "")
        + f"; collector settings: {gc_mode} on both sides; "
        + (
            "both sides at once, each on a core of its own, swapped every repeat"
            if cores
            else "one side after the other, each on every core, the first swapped every repeat"
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        for saver in savers:
            print(f"\n{saver}:", flush=True)
            ratios, extra = [], []
            for i in range(1, repeat + 1):
                pinned = cores if cores is None or i % 2 else (cores[1], cores[0])
                # one after the other: the side that goes first alternates too, so neither
                # always meets the machine's first (or second) half-minute
                second_first = not pinned and i % 2 == 0
                first, second = await measure_pair(
                    saver, runs, latency_ms / 1000, Path(tmp), gc_mode, pinned, pair, second_first
                )
                where = f"; {y} first" if second_first else ""
                if pinned:
                    if [first["cpus"], second["cpus"]] != [[pinned[0]], [pinned[1]]]:
                        raise RuntimeError(
                            f"a child ran on other cores: {first['cpus']}, {second['cpus']}"
                        )
                    where = f"; {x} on core {pinned[0]}, {y} on core {pinned[1]}"
                ratios.append(first["throughput"] / second["throughput"])
                extra.append(first["rss_per_run_kb"] - second["rss_per_run_kb"])
                print(
                    f"  repeat {i}: runs/s {x} {first['throughput']:6.1f} {y} "
                    f"{second['throughput']:6.1f} (ratio {ratios[-1]:.2f}); RSS KB/run {x} "
                    f"{first['rss_per_run_kb']:6.1f} {y} {second['rss_per_run_kb']:6.1f} "
                    f"({extra[-1]:+.1f}); CPU s {x} {first['cpu_s']:.1f} {y} "
                    f"{second['cpu_s']:.1f}; load {load()}{where}",
                    flush=True,
                )
            print(
                f"  throughput {a} / {b}   {spread(ratios)} "
                f"(median {statistics.median(ratios):.2f})"
            )
            print(f"  RSS per run above {b}   {spread(extra, '{:+.0f}')} KB")
            print(f"  load average {load()}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        side, url, n, latency, home, gc_mode, cpu = sys.argv[2:9]
        if cpu:  # before any thread starts: every thread of the child inherits it
            os.sched_setaffinity(0, {int(cpu)})
        out = asyncio.run(child(side, url, int(n), float(latency), Path(home), gc_mode))  # type: ignore[arg-type]
        print(json.dumps(out))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--savers", nargs="+", choices=SAVERS, default=list(SAVERS))
    parser.add_argument("--runs", type=int, default=1000, help="runs started at once")
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--gc",
        choices=("default", "service"),
        default="default",
        help="collector settings of both sides: Python's, or keel serve/worker's",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="both sides at once, each pinned to a core of its own (swapped every repeat)",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        choices=ALL_SIDES,
        default=list(PAIR),
        metavar="SIDE",
        help=f"the two sides compared (of {', '.join(ALL_SIDES)}); the same one twice shows "
        "how far the ratio of identical work spreads on this machine",
    )
    args = parser.parse_args()
    sys.exit(
        asyncio.run(
            main(
                args.savers,
                args.runs,
                args.latency_ms,
                args.repeat,
                args.gc,
                args.together,
                (args.pair[0], args.pair[1]),
            )
        )
    )
