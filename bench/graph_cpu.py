"""CPU per run: Keel against raw LangGraph doing the same work, and Postgres' share of it.

```bash
nice -n 10 .venv/bin/python -m bench.graph_cpu                      # all savers; ~2 min
nice -n 10 .venv/bin/python -m bench.graph_cpu --savers memory --runs 50 --profile 25
```
Every side runs `bench.workload`: the same scripted replies (six model calls, five tool
calls on the sample sales database), the same tool functions, `durability="sync"`; the raw
sides (LangGraph's textbook loop and langchain's `create_agent`) on the stock saver. Runs
interleave Keel / textbook / create_agent, so a busy machine slows all alike, and the whole
measurement is repeated (`--repeat`, default 3): each ratio is printed as its range over
the repeats, with the load average. CPU is `time.process_time()` of this process (all its
threads); the Postgres server's CPU is not in it.

On Postgres each side then runs `--count-runs` more runs on a database of its own, and the
script reports per run: statements sent (every `execute`, and every parameter set of an
`executemany`, counted by wrapping psycopg's cursor), transactions committed and rows
inserted (from `pg_stat_database`, read after the side's connections are closed so the
server has flushed its counters; the cost of opening and closing the side is measured
apart and subtracted).
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
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import MODEL_CALLS, SIDES, TOOL_CALLS, Run, Side, new_thread, runner
from keel.config import ObservabilitySettings
from keel.observability.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SAVERS = ("memory", "sqlite", "postgres")
RAW: tuple[Side, ...] = tuple(s for s in SIDES if s != "keel")


@asynccontextmanager
async def side_urls(saver: str, tmp: Path) -> AsyncIterator[dict[Side, str]]:
    """A store per side (its own SQLite file or Postgres database), dropped on exit."""
    if saver == "memory":
        yield dict.fromkeys(SIDES, "memory://")
        return
    if saver == "sqlite":
        yield {side: f"sqlite:///{tmp / f'{side}.sqlite'}" for side in SIDES}
        return
    async with AsyncExitStack() as stack:
        yield {side: await stack.enter_async_context(scratch_database(side)) for side in SIDES}


@asynccontextmanager
async def scratch_database(label: str) -> AsyncIterator[str]:
    import psycopg

    name = f"keel_bench_{label}_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rpartition("/")[0] + "/" + name
    finally:
        async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def cpu_per_run(
    runs: list[Run], rounds: int, profile: cProfile.Profile | None
) -> list[float]:
    """Median CPU seconds per run of each runner, interleaved; one warm-up round."""
    samples: list[list[float]] = [[] for _ in runs]
    for round_ in range(rounds + 1):
        for i, run in enumerate(runs):
            prof = profile if (round_ and i == 0) else None
            started = time.process_time()
            if prof:
                prof.enable()
            await run(new_thread())
            if prof:
                prof.disable()
            if round_:
                samples[i].append(time.process_time() - started)
    return [statistics.median(s) for s in samples]


async def measure_cpu(
    saver: str, rounds: int, repeat: int, home: Path, profile: cProfile.Profile | None
) -> list[dict[Side, float]]:
    """Per repeat, the median CPU seconds per run of each side."""
    results = []
    async with side_urls(saver, home) as urls, AsyncExitStack() as stack:
        runs = [
            await stack.enter_async_context(runner(side, urls[side], home / side)) for side in SIDES
        ]
        for _ in range(repeat):
            medians = await cpu_per_run(runs, rounds, profile)
            results.append(dict(zip(SIDES, medians, strict=True)))
    return results


# ------------------------------------------------------------------ Postgres round trips


@dataclass
class Counts:
    statements: float = 0.0
    transactions: float = 0.0
    rows: float = 0.0

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.statements - other.statements,
            self.transactions - other.transactions,
            self.rows - other.rows,
        )

    def per(self, n: int) -> Counts:
        return Counts(self.statements / n, self.transactions / n, self.rows / n)


class StatementCounter:
    """Counts what psycopg's async cursors send (an `executemany` counts per row)."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        from psycopg import AsyncCursor

        execute, executemany = AsyncCursor.execute, AsyncCursor.executemany
        counter = self

        async def counted_execute(cur: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return await execute(cur, *args, **kwargs)

        async def counted_executemany(cur: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
            params_seq = list(params_seq)
            counter.count += len(params_seq)
            return await executemany(cur, query, params_seq, **kw)

        AsyncCursor.execute = counted_execute  # type: ignore[method-assign,assignment]
        AsyncCursor.executemany = counted_executemany  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            AsyncCursor.execute = execute  # type: ignore[method-assign]
            AsyncCursor.executemany = executemany  # type: ignore[method-assign]


async def server_counts(url: str) -> tuple[int, int]:
    """`(transactions committed, rows inserted)` so far in `url`'s database."""
    import psycopg

    dbname = url.rpartition("/")[2]
    await asyncio.sleep(0.3)  # the closed backends' last counters reach the stats system
    async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def count_session(side: Side, url: str, home: Path, runs: int) -> Counts:
    """Open the side, do `runs` runs, close it: what that sent and committed."""
    counter = StatementCounter()
    before = await server_counts(url)
    with counter.installed():
        async with runner(side, url, home) as run:
            for _ in range(runs):
                await run(new_thread())
    after = await server_counts(url)
    return Counts(counter.count, after[0] - before[0], after[1] - before[1])


async def postgres_counts(runs: int, home: Path) -> dict[Side, Counts]:
    """Per side and run: statements, transactions and inserted rows."""
    found: dict[Side, Counts] = {}
    for side in SIDES:
        async with scratch_database(side) as url:
            await count_session(side, url, home / side, 1)  # tables, sample DB, warm caches
            idle = await count_session(side, url, home / side, 0)
            busy = await count_session(side, url, home / side, runs)
            found[side] = busy.minus(idle).per(runs)
    return found


# ------------------------------------------------------------------ report


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def report_cpu(saver: str, results: list[dict[Side, float]], rounds: int) -> None:
    print(f"\n{saver}: CPU ms per run (median of {rounds} interleaved runs), per repeat")
    for i, r in enumerate(results, 1):
        cells = "  ".join(f"{side} {r[side] * 1000:6.1f}" for side in SIDES)
        print(f"  repeat {i}: {cells}")
    for raw in RAW:
        ratios = [r["keel"] / r[raw] for r in results]
        print(f"  Keel / {raw:<12} {spread(ratios)}")


def report_counts(counts: dict[Side, Counts], runs: int) -> None:
    print(f"\npostgres: per run (mean of {runs} runs, open/close cost subtracted)")
    print(f"  {'side':<13} {'statements':>10} {'transactions':>13} {'rows inserted':>14}")
    for side in SIDES:
        c = counts[side]
        print(f"  {side:<13} {c.statements:>10.1f} {c.transactions:>13.1f} {c.rows:>14.1f}")
    keel = counts["keel"]
    for raw in RAW:
        c = counts[raw]
        print(
            f"  Keel / {raw:<12} statements {keel.statements / c.statements:.2f}, "
            f"transactions {keel.transactions / max(c.transactions, 1e-9):.2f}, "
            f"rows {keel.rows / c.rows:.2f}"
        )


def print_profile(profile: cProfile.Profile, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumtime").print_stats(top)
    own = re.escape(str(ROOT)) + "/(keel|nodes|tools|checkpoints|graphs)/"
    stats.sort_stats("cumtime").print_stats(own, top)
    print(out.getvalue())


async def main(
    savers: list[str], rounds: int, repeat: int, count_runs: int, profile_top: int
) -> int:
    configure_logging(ObservabilitySettings(log_level="warning"))
    profile = cProfile.Profile(time.process_time) if profile_top else None
    print(
        f"same work each side: {MODEL_CALLS} model calls, {TOOL_CALLS} tool calls, "
        f"durability sync; sides: {', '.join(SIDES)}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for saver in savers:
            results = await measure_cpu(saver, rounds, repeat, Path(tmp) / saver, profile)
            report_cpu(saver, results, rounds)
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"  load average {load}", flush=True)
        if "postgres" in savers and count_runs:
            report_counts(await postgres_counts(count_runs, Path(tmp) / "counts"), count_runs)
    if profile is not None:
        print_profile(profile, profile_top)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--savers", nargs="+", choices=SAVERS, default=list(SAVERS))
    parser.add_argument("--runs", type=int, default=30, help="interleaved rounds per repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--count-runs", type=int, default=10, help="Postgres counting runs")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    sys.exit(
        asyncio.run(
            main(args.savers, min(args.runs, 500), args.repeat, args.count_runs, args.profile)
        )
    )
