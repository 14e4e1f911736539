"""Instructions per run, Keel against raw LangGraph: the CPU ratio that load cannot move.

```bash
.venv/bin/python -m bench.instructions                       # keel and textbook, ~10 min
.venv/bin/python -m bench.instructions --sides keel textbook create_agent --low 5 --high 25
.venv/bin/python -m bench.instructions --at-once --low 0 --high 200   # 200 runs at once
.venv/bin/python -m bench.instructions --at-once --low 0 --high 1000  # 1,000 at once, ~20 min
```
Wall-clock CPU ratios (`bench/graph_cpu.py`) move by ±0.15 on a busy 2-core machine;
`valgrind --tool=callgrind` counts the instructions a process executes, the same for the
same binary and inputs whatever else the machine does. Each side runs `bench.workload` on
the memory saver (six scripted model calls, five tool calls, `durability="sync"`) in two
processes under callgrind: 5 warm-up runs then `--low` runs, and 5 warm-up runs then
`--high` runs. The difference of their totals divided by `high - low` is the instructions
of one run, without the interpreter's start-up, the imports and the warm-up (all threads of
the process are counted). Printed per side, and each side's ratio to `textbook`.
Needs `valgrind` on the PATH; each process takes a few minutes under it, and they run as
many at a time as the machine has cores.

`--at-once` starts the measured runs together instead (each model call waiting
`bench.concurrency.LATENCY_MS`, 200 ms, so they are all alive at once): the CPU side of the
many-runs-at-once target without the machine's noise, the collector's passes over the live
runs included.

Each side also prints the full collections the garbage collector made during the measured
runs (the long process's less the short one's). One costs ~58 M instructions here, so
whether the measured runs happen to include one moves a side's figure by ~3 M a run (a
threshold: a few objects more or fewer a run decide it). Compare figures with the same
count, or allow for the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.concurrency import LATENCY_MS, LIMITS
from bench.workload import SIDES, Side, new_thread, runner

WARM_UP = 5
K = TypeVar("K")
T = TypeVar("T")
_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")
_FULL = re.compile(r"keel-bench full-collections=(\d+)")


async def child(side: Side, runs: int, *, at_once: bool = False) -> None:
    """`WARM_UP` runs, then `runs` more, of `side` on the memory saver. `at_once`: the
    `runs` start together, every model call waiting as long as in `bench.concurrency`, with
    its hour-long timeouts (so all of them are alive at the same time; under callgrind a
    batch takes minutes of wall time)."""
    latency, limits = (LATENCY_MS / 1000, LIMITS) if at_once else (0.0, None)
    with tempfile.TemporaryDirectory(prefix="keel-instr-") as home:
        async with runner(side, "memory://", Path(home), latency_s=latency, limits=limits) as run:
            for _ in range(WARM_UP):
                await run(new_thread())
            if at_once:
                await asyncio.gather(*(run(new_thread()) for _ in range(runs)))
                return
            for _ in range(runs):
                await run(new_thread())


def collected(valgrind_output: str) -> int:
    """The instruction total callgrind reports at exit."""
    found = _COLLECTED.search(valgrind_output)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {valgrind_output[-500:]}")
    return int(found.group(1).replace(",", ""))


def callgrind(
    python_args: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None
) -> str:
    """What valgrind and `python <python_args>` wrote to stderr under callgrind, run from the
    checkout's root with it on the path (or from `cwd`, with the environment `env`)."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    root = str(Path(__file__).resolve().parent.parent)
    if env is None:
        env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run(
        [*command, *python_args],
        capture_output=True,
        text=True,
        cwd=cwd or root,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"{' '.join(python_args)} failed ({done.returncode}):\n{tail}")
    return done.stderr


def callgrind_total(
    python_args: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None
) -> int:
    """The instructions callgrind counts for `python <python_args>` (see `callgrind`)."""
    return collected(callgrind(python_args, cwd=cwd, env=env))


def instructions(side: str, runs: int, *, at_once: bool = False) -> tuple[int, int]:
    """The instructions of one process running `side` `WARM_UP + runs` times, and the full
    collections it made."""
    mode = ["at-once"] if at_once else []
    stderr = callgrind(["-m", "bench.instructions", "--child", side, str(runs), *mode])
    full = _FULL.search(stderr)
    return collected(stderr), int(full.group(1)) if full else -1


def side_by_side(
    keys: Iterable[K], low: int, high: int, measure: Callable[[K, int], T]
) -> dict[tuple[K, int], T]:
    """`measure(key, runs)` for each key at `low` and at `high` runs, as many processes at a
    time as the machine has cores (instruction counts do not depend on what else runs)."""
    jobs = [(key, runs) for key in keys for runs in (low, high)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(jobs, pool.map(lambda j: measure(*j), jobs), strict=True))


def per_run_of(
    sides: list[str], low: int, high: int, *, at_once: bool = False
) -> dict[str, tuple[float, int]]:
    """Each side's instructions per measured run, and the full collections among its
    measured runs (its processes run side by side with the other side's)."""
    done = side_by_side(
        sides, low, high, lambda side, runs: instructions(side, runs, at_once=at_once)
    )
    return {
        side: (
            (done[side, high][0] - done[side, low][0]) / (high - low),
            done[side, high][1] - done[side, low][1],
        )
        for side in sides
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=["keel", "textbook"])
    parser.add_argument("--low", type=int, default=5, help="measured runs of the short process")
    parser.add_argument("--high", type=int, default=25, help="measured runs of the long one")
    parser.add_argument(
        "--at-once",
        action="store_true",
        help=f"start the measured runs together ({LATENCY_MS:g} ms a model call), as "
        "bench.concurrency",
    )
    parser.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, runs, *mode = args.child
        asyncio.run(child(side, int(runs), at_once=mode == ["at-once"]))
        print(f"keel-bench full-collections={gc.get_stats()[2]['collections']}", file=sys.stderr)
        return 0
    if args.high <= args.low:
        parser.error("--high must be more than --low")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not on the PATH")
    sides = list(dict.fromkeys(["textbook", *args.sides]))
    counts = per_run_of(sides, args.low, args.high, at_once=args.at_once)
    span = args.high - args.low
    how = "started together" if args.at_once else "one after another"
    print(f"instructions per run (callgrind; ({args.high} - {args.low} runs) / {span}, {how})")
    for side, (count, full) in counts.items():
        ratio = count / counts["textbook"][0]
        print(
            f"  {side:<13} {count / 1e6:8.1f} M   / textbook {ratio:.2f}   "
            f"(full collections in the measured runs: {full})"
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} (instruction counts do not depend on it; one run suffices)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
