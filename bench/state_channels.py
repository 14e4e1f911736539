"""What one more state channel costs a run: the textbook loop with wider states, by instructions.

```bash
.venv/bin/python -m bench.state_channels                    # 0, 2 and 22 extra keys, ~10 min
.venv/bin/python -m bench.state_channels --keys 0 8 --low 0 --high 30
```
LangGraph visits every channel of a graph at every step (it offers each an empty update,
checkpoints it, compares its version, reads it into the next node's input), whether a node
wrote it or not. Keel's agent graph has 36 channels against the textbook loop's 5, so this
measures the price of a channel on the loop itself: `bench.workload`'s textbook side (six
scripted model calls, five tool calls, the memory saver, `durability="sync"`) with `k` more
`str` keys in its state, each set once in the input and never written again. Instructions
per run come from callgrind as in `bench.instructions` (a process of `--low` runs and one of
`--high`, after the same warm-up; their difference over `high - low`), one pair per `--keys`
value, and are printed with what each extra key added. The loop's conditional edge
(`tools_condition`) reads the whole state each model step, so a key costs it more than it
costs Keel, whose edges read `signal` alone (docs/benchmarks.md, "what a state channel costs").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.instructions import WARM_UP, callgrind_total, side_by_side
from bench.workload import new_thread, runner


async def child(extra_keys: int, runs: int) -> None:
    """`WARM_UP` runs, then `runs` more, of the textbook loop with `extra_keys` more keys."""
    with tempfile.TemporaryDirectory(prefix="keel-keys-") as home:
        async with runner("textbook", "memory://", Path(home), extra_keys=extra_keys) as run:
            for _ in range(WARM_UP + runs):
                await run(new_thread())


def per_run(keys: list[int], low: int, high: int) -> dict[int, float]:
    """Instructions per measured run for each count of extra keys (processes side by side)."""

    def count(extra_keys: int, runs: int) -> int:
        return callgrind_total(
            ["-m", "bench.state_channels", "--child", str(extra_keys), str(runs)]
        )

    totals = side_by_side(keys, low, high, count)
    return {k: (totals[k, high] - totals[k, low]) / (high - low) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", nargs="+", type=int, default=[0, 2, 22])
    parser.add_argument("--low", type=int, default=0, help="measured runs of the short process")
    parser.add_argument("--high", type=int, default=60, help="measured runs of the long one")
    parser.add_argument(
        "--child", nargs=2, type=int, metavar=("KEYS", "RUNS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(child(*args.child))
        return 0
    if args.high <= args.low:
        parser.error("--high must be more than --low")
    if any(k < 0 for k in args.keys):
        parser.error("--keys must be 0 or more")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not on the PATH")
    keys = sorted({0, *args.keys})
    counts = per_run(keys, args.low, args.high)
    base = counts[0]
    print(f"the textbook loop, instructions per run (callgrind; ({args.high} - {args.low}) runs)")
    for k in keys:
        added = counts[k] - base
        each = f"   {added / k / 1e3:6.0f} K a key" if k else ""
        print(f"  {k:3d} extra keys {counts[k] / 1e6:8.2f} M   +{added / base:5.1%}{each}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} (instruction counts do not depend on it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
