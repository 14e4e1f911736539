"""CPU per run of Keel's agent graph in-process, against raw LangGraph in the same process.

```bash
nice -n 10 .venv/bin/python bench/graph_cpu.py                    # Postgres, 30 runs each
nice -n 10 .venv/bin/python bench/graph_cpu.py --saver memory --profile 25
```
Keel runs the service benchmark's workload (`scripted:sales`, no model latency: the sales
question's SQL, calculator and answer calls, eight graph steps) through `Agent.arun`, logging
at warning level. The baseline is raw LangGraph's textbook loop from `bench/durability.py`
(five tool iterations) on the same saver. Runs alternate between the two, so a busy machine
slows both alike: `Keel/raw` is the number to compare across commits when the CPU is shared.
CPU is `time.process_time()` (this process, all threads); Postgres' own CPU is not counted.
`--profile N` prints cProfile's top N functions of the Keel runs (CPU time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.durability import Run, raw_runner, saver_urls
from keel.config import ObservabilitySettings, load_settings
from keel.observability.logs import configure_logging
from keel.runtime import open_agent

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Which 3 products had the highest revenue last month, and what was their total revenue?"


@asynccontextmanager
async def keel_runner(url: str, home: Path) -> AsyncIterator[Run]:
    settings = load_settings(
        model="scripted:sales",
        checkpoint_url=url,
        home=home,
        observability={"log_level": "warning"},
    )
    async with open_agent(settings) as agent:

        async def run(thread_id: str) -> None:
            result = await agent.arun(QUESTION, thread_id=thread_id)
            assert result.success, result.error

        yield run


async def cpu_per_run(
    runners: list[Run], runs: int, profile: cProfile.Profile | None
) -> list[float]:
    """Median CPU seconds per run for each runner, alternating; one warm-up run each."""
    samples: list[list[float]] = [[] for _ in runners]
    for round_ in range(runs + 1):
        for i, run in enumerate(runners):
            prof = profile if (round_ and i == 0) else None
            started = time.process_time()
            if prof:
                prof.enable()
            await run(uuid.uuid4().hex)
            if prof:
                prof.disable()
            if round_:
                samples[i].append(time.process_time() - started)
    return [statistics.median(s) for s in samples]


async def main(runs: int, saver: str, profile_top: int) -> int:
    configure_logging(ObservabilitySettings(log_level="warning"))
    profile = cProfile.Profile(time.process_time) if profile_top else None
    with tempfile.TemporaryDirectory() as tmp:
        async with saver_urls([saver], Path(tmp)) as urls:
            url = urls[saver]
            async with (
                keel_runner(url, Path(tmp) / "home") as keel_run,
                raw_runner(url, "async") as raw_run,
            ):
                keel, raw = await cpu_per_run([keel_run, raw_run], runs, profile)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"saver {saver}, {runs} runs each, load average {load}")
    print(f"Keel sales run   {keel * 1000:7.1f} ms CPU (median)")
    print(f"raw LangGraph    {raw * 1000:7.1f} ms CPU (median, 5 tool iterations)")
    print(f"Keel/raw         {keel / raw:7.2f}")
    if profile is not None:
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(profile_top)
        stats.sort_stats("cumtime").print_stats(profile_top)
        own = re.escape(str(ROOT)) + "/(keel|nodes|tools|checkpoints|graphs)/"
        stats.sort_stats("cumtime").print_stats(own, profile_top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--saver", choices=["memory", "sqlite", "postgres"], default="postgres")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(min(args.runs, 500), args.saver, args.profile)))
