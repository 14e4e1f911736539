"""Keel vs a plain `langchain.agents.create_agent` agent under a seeded 30 % fault mix.

```bash
.venv/bin/python bench/chaos.py              # 200 tasks, 30 % faults, seed 7
.venv/bin/python bench/chaos.py --tasks 300 --rate 0.3 --seed 11
```
The measurement lives in `keel.evals.scorecard` (shared with `keel eval`): both agents
talk to the same chaos server over real HTTP, one run at a time, and meet the same fault
sequence for the same requests. This script prints its Markdown table and the faults met.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from keel.evals.scorecard import parse_kinds, scorecard


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faults", default="", help="comma-separated kinds (default: all)")
    args = parser.parse_args(argv)
    card = await scorecard(
        tasks=args.tasks, rate=args.rate, seed=args.seed, kinds=parse_kinds(args.faults)
    )
    print(card.markdown())
    for name, met in card.faults_met.items():
        print(f"faults met — {name}: {met}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
