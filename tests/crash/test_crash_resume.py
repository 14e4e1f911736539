"""SIGKILL a real agent (in a subprocess, on Postgres) at many points; resume; check effects.

Each run makes three side effects (appended lines) through a non-idempotent tool. The process
dies with SIGKILL at one of 25 points (5 kinds of moment × several occurrences), the next
process resumes it, and at the end every run must have finished with the answer an unbroken
run gives, and every effect must be in the file exactly once.

Subprocesses come from a forkserver that imports Keel once, so 50+ runs stay fast.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.crash import child

pytestmark = pytest.mark.postgres

POINTS: list[tuple[str, int]] = [
    *(("model", n) for n in (0, 1, 2)),  # during a model call
    *(("tool_before", n) for n in (0, 1, 2)),  # inside the tool, before its write
    *(("tool_after", n) for n in (0, 1, 2)),  # inside the tool, after its write
    *(("journal_after", n) for n in (0, 1, 2)),  # effect journaled, step not yet saved
    *(("put_before", n) for n in (1, 2, 4, 6)),  # a step done, its checkpoint not written
    *(("put_after", n) for n in (1, 3, 5, 7)),  # between steps
    *(("writes_after", n) for n in (0, 1, 2, 3, 5)),  # a task's writes saved, step not closed
]
RUNS_PER_POINT = 2


@pytest.fixture(scope="module")
def forkserver() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.crash.child"])
    return ctx


def _spawn(ctx: Any, job: dict[str, Any]) -> int:
    proc = ctx.Process(target=child.main, args=(job,))
    proc.start()
    proc.join(timeout=60)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"subprocess hung: {job}")
    code = int(proc.exitcode)
    error = Path(job["results"]) / f"{job.get('thread') or 'final'}.error"
    assert code in (0, -signal.SIGKILL), error.read_text() if error.exists() else code
    return code


def _expected_keys(thread_id: str) -> dict[str, str]:
    return {
        f"{thread_id}:call-0-0": "a",
        f"{thread_id}:call-1-0": "b",
        f"{thread_id}:call-1-1": "c",
    }


def test_sigkill_at_every_point_resumes_with_effects_exactly_once(
    forkserver: Any, postgres_url: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.log"
    results = tmp_path / "results"
    results.mkdir()
    base = {
        "pg_url": postgres_url,
        "effects": str(effects),
        "results": str(results),
        "home": str(tmp_path / "home"),
    }
    # An unbroken run first: the answer every crashed run must end with.
    assert (
        _spawn(forkserver, {**base, "resume": [], "thread": "clean", "kind": None, "count": 0}) == 0
    )
    clean = json.loads((results / "clean.json").read_text())
    assert clean["success"] and clean["output"] == child.ANSWER

    threads: list[str] = []
    pending: list[str] = []
    killed: Counter[str] = Counter()
    for run in range(RUNS_PER_POINT):
        for kind, count in POINTS:
            thread_id = f"crash-{run}-{kind}-{count}"
            job = {**base, "resume": pending, "thread": thread_id, "kind": kind, "count": count}
            code = _spawn(forkserver, job)
            assert code == -signal.SIGKILL, f"{thread_id} was not killed (exit {code})"
            killed[kind] += 1
            threads.append(thread_id)
            pending = [thread_id]
    assert _spawn(forkserver, {**base, "resume": pending, "thread": None}) == 0

    assert len(threads) >= 50 and len(killed) >= 5
    lines = Counter(effects.read_text().splitlines())
    for thread_id in ["clean", *threads]:
        result = json.loads((results / f"{thread_id}.json").read_text())
        assert result["success"], f"{thread_id}: {result['error']}"
        assert result["output"] == clean["output"], thread_id
        for key, tag in _expected_keys(thread_id).items():
            assert lines[f"{key} {tag}"] == 1, (
                f"{thread_id}: effect {tag} ran {lines[f'{key} {tag}']}×"
            )
    assert sum(lines.values()) == 3 * (len(threads) + 1), "no effect outside the expected ones"


ASYNC_POINTS: list[tuple[str, int]] = [
    ("model", 2),
    ("tool_after", 0),
    ("tool_after", 2),
    ("journal_after", 1),
    ("put_after", 5),
    ("writes_after", 3),
]


def test_async_durability_keeps_effects_exactly_once(
    forkserver: Any, postgres_url: str, tmp_path: Path
) -> None:
    """`async` checkpoints may lag behind a SIGKILL, so resumed runs repeat steps, but the
    journal still stops every completed effect from happening twice."""
    effects = tmp_path / "effects.log"
    results = tmp_path / "results"
    results.mkdir()
    base = {
        "pg_url": postgres_url,
        "effects": str(effects),
        "results": str(results),
        "home": str(tmp_path / "home"),
        "durability": "async",
    }
    threads, pending = [], []
    for kind, count in ASYNC_POINTS:
        thread_id = f"async-{kind}-{count}"
        job = {**base, "resume": pending, "thread": thread_id, "kind": kind, "count": count}
        assert _spawn(forkserver, job) == -signal.SIGKILL, thread_id
        threads.append(thread_id)
        pending = [thread_id]
    assert _spawn(forkserver, {**base, "resume": pending, "thread": None}) == 0
    lines = Counter(effects.read_text().splitlines())
    for thread_id in threads:
        result = json.loads((results / f"{thread_id}.json").read_text())
        assert result["success"] and result["output"] == child.ANSWER, thread_id
        for key, tag in _expected_keys(thread_id).items():
            assert lines[f"{key} {tag}"] == 1, f"{thread_id}: effect {tag}"
