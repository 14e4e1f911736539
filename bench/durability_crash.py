"""What each durability mode risks under SIGKILL: how far behind the saved state is, and
whether the run can resume with its effects exactly once.

```bash
.venv/bin/python bench/durability_crash.py --trials 10     # needs Postgres on 127.0.0.1
```
It uses the crash test's agent (`tests/crash/child.py`: three side effects through a
non-idempotent tool, a scripted model) in subprocesses on a throwaway Postgres database. Each
trial SIGKILLs a run at the same moment (inside its third model call, after two
reason→act→observe cycles), reads the latest checkpoint the killed process left, then
resumes the run in a new process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.runnables import RunnableConfig

from keel import open_saver
from tests.crash import child

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MODES = ("sync", "async", "exit")


def spawn(ctx: Any, job: dict[str, Any]) -> int:
    proc = ctx.Process(target=child.main, args=(job,))
    proc.start()
    proc.join(timeout=60)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return int(proc.exitcode)


async def saved_step(url: str, thread_id: str) -> int | None:
    async with open_saver(url) as saver:
        found = await saver.aget_tuple(RunnableConfig(configurable={"thread_id": thread_id}))
    return None if found is None else int(found.metadata.get("step", -1))


def main(trials: int) -> int:
    import psycopg

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.crash.child"])
    dbname = f"keel_crashbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = PG_ADMIN.rpartition("/")[0] + "/" + dbname
    print(f"{trials} SIGKILLs per mode, inside the third model call (after 2 tool cycles)\n")
    print(
        f"{'mode':<6} {'step of the saved checkpoint':<30} {'resumed':>8} {'no effect twice':>16}"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in MODES:
                base = {
                    "pg_url": url,
                    "effects": f"{tmp}/{mode}.log",
                    "results": tmp,
                    "home": f"{tmp}/home",
                    "durability": mode,
                    "quiet": True,
                }
                steps: list[str] = []
                resumed = once = 0
                for trial in range(trials):
                    thread_id = f"{mode}-{trial}"
                    job = {**base, "resume": [], "thread": thread_id, "kind": "model", "count": 2}
                    assert spawn(ctx, job) == -signal.SIGKILL
                    step = asyncio.run(saved_step(url, thread_id))
                    steps.append("none" if step is None else str(step))
                    code = spawn(ctx, {**base, "resume": [thread_id], "thread": None})
                    out = Path(tmp) / f"{thread_id}.json"
                    if code == 0 and out.exists() and json.loads(out.read_text())["success"]:
                        resumed += 1
                    lines = Counter(Path(base["effects"]).read_text().splitlines())
                    mine = [n for line, n in lines.items() if line.startswith(f"{thread_id}:")]
                    once += int(all(n == 1 for n in mine))
                seen = ", ".join(f"{s}×{n}" for s, n in sorted(Counter(steps).items()))
                print(f"{mode:<6} {seen:<30} {resumed:>5}/{trials} {once:>13}/{trials}")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    sys.exit(main(parser.parse_args().trials))
