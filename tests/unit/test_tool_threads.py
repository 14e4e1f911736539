"""Sync tools in thread mode cannot stall the event loop or the process's exit (issue 18, 7).

A hostile calculator call used to hold the GIL in one C call (the loop, `/healthz` and every
other tenant waited); a timed-out sync tool kept `asyncio.run` (so `keel.run`) waiting for
its abandoned thread at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from keel.config import Settings, SqlToolSettings
from keel.errors import ToolInputError
from keel.resilience.isolation import MAX_RUNNING, set_tool_threads, tool_threads
from keel.runtime import open_agent
from keel.tools import ToolContext, calculator, sql_query, tool

HOSTILE = [
    "round(5, -10**8)",
    "round(5, -(10**8))",
    "round(10**999, -(10**6))",
    "(10**999) * (10**999) * (10**999)",
    "max(10**999, 2) ** 1000",
]

MAX_STALL_S = 2.5
"""Longest loop stall allowed: the stalls these tests catch last 7 s to minutes, while a
loaded 2-core machine alone shows up to ~1.4 s between ticks."""


HOSTILE_SQL = [
    "SELECT printf('%.*c', 2000000000, 'x')",
    "SELECT length(randomblob(900000000))",
    "SELECT " + "(" * 5000 + "1" + ")" * 5000,
    "SELECT 1 FROM orders WHERE " + " OR ".join(f"id = {i}" for i in range(2000)),
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
]


@tool(timeout_s=0.2)
def spin(seconds: float) -> str:
    """Burn CPU in Python for a while (a CPU-bound sync tool)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return str(n)


async def _max_tick_gap(work: asyncio.Future[Any], every: float = 0.05) -> float:
    """Tick every `every` seconds until `work` is done; return the longest gap seen."""
    gap, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(every)
        now = time.monotonic()
        gap, last = max(gap, now - last), now
    return gap


async def test_hostile_calculator_calls_keep_the_loop_ticking() -> None:
    ctx = ToolContext(Settings(), tool_call_id="c1")

    async def hostile() -> list[str]:
        refusals = []
        for expression in HOSTILE:
            with pytest.raises(ToolInputError) as info:
                args = calculator.validate({"expression": expression})
                await asyncio.wait_for(calculator.invoke(args, ctx), timeout=1.0)
            refusals.append(info.value.message)
        return refusals

    work = asyncio.ensure_future(hostile())
    gap = await _max_tick_gap(work)
    assert len(await work) == len(HOSTILE)
    assert gap < MAX_STALL_S, f"the event loop stalled for {gap:.2f}s"


async def test_hostile_sql_calls_keep_the_loop_ticking(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, sql=SqlToolSettings(statement_timeout_s=1.0))
    ctx = ToolContext(settings, tool_call_id="c1")

    async def hostile() -> int:
        for query in HOSTILE_SQL:
            with contextlib.suppress(ToolInputError):
                args = sql_query.validate({"query": query})
                await asyncio.wait_for(sql_query.invoke(args, ctx), timeout=3.0)
        return len(HOSTILE_SQL)

    work = asyncio.ensure_future(hostile())
    gap = await _max_tick_gap(work)
    assert await work == len(HOSTILE_SQL)
    assert gap < MAX_STALL_S, f"the event loop stalled for {gap:.2f}s"


async def test_a_timed_out_cpu_bound_tool_is_abandoned_and_the_loop_keeps_ticking() -> None:
    ctx = ToolContext(Settings(), tool_call_id="c1")
    started = time.monotonic()

    async def call() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(spin.invoke(spin.validate({"seconds": 1.5}), ctx), 0.2)

    work = asyncio.ensure_future(call())
    gap = await _max_tick_gap(work)
    await work
    assert time.monotonic() - started < 1.2
    assert gap < MAX_STALL_S


async def test_thread_mode_keeps_context_variables_and_errors() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    @tool
    def read_var() -> str:
        """Return the context variable's value."""
        return var.get()

    @tool
    def fail() -> str:
        """Raise."""
        raise ValueError("boom")

    var.set("from the caller")
    ctx = ToolContext(Settings(), tool_call_id="c1")
    assert await read_var.invoke(read_var.validate({}), ctx) == "from the caller"
    with pytest.raises(ValueError, match="boom"):
        await fail.invoke(fail.validate({}), ctx)


def test_an_abandoned_tool_thread_does_not_delay_exit() -> None:
    """`asyncio.run` used to wait for the default executor, so for the abandoned call."""
    script = textwrap.dedent(
        """
        import asyncio, time
        from keel.config import Settings, SqlToolSettings
        from keel.tools import ToolContext, tool

        @tool
        def stuck() -> str:
            "Block for a long time."
            time.sleep(30)
            return "late"

        async def main() -> None:
            ctx = ToolContext(Settings(), tool_call_id="c1")
            try:
                await asyncio.wait_for(stuck.invoke(stuck.validate({}), ctx), 0.2)
            except TimeoutError:
                pass

        started = time.monotonic()
        asyncio.run(main())
        print(round(time.monotonic() - started, 2))
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert float(done.stdout.strip().splitlines()[-1]) < 2.0
    assert time.monotonic() - started < 25  # nor the interpreter's exit (the tool sleeps 30 s)


async def test_sync_tool_calls_reuse_an_idle_thread() -> None:
    """Starting a thread per call blocked the event loop in `Thread.start()` until the new
    thread ran: a GIL hand-over and back per tool call with many runs at once (issue 19)."""
    seen: list[threading.Thread] = []

    @tool
    def where() -> str:
        """Note the thread the call runs on."""
        seen.append(threading.current_thread())
        return "ok"

    ctx = ToolContext(Settings(), tool_call_id="c1")
    idle = [t for t in threading.enumerate() if t.name.startswith("keel-tool")]
    for _ in range(10):
        assert await where.invoke(where.validate({}), ctx) == "ok"
    assert len(set(seen)) <= len(idle) + 1  # a thread per call: 10
    assert all(t.daemon and t is not threading.main_thread() for t in seen)


def _stuck_and_quick(release: threading.Event, most_s: float) -> tuple[Any, Any]:
    """A sync tool that blocks until `release` is set (at most `most_s`) and one that
    returns at once."""

    @tool
    def stuck() -> str:
        """Block until released."""
        release.wait(most_s)
        return "late"

    @tool
    def quick() -> str:
        """Return at once."""
        return "quick"

    return stuck, quick


async def test_a_stuck_sync_tool_does_not_hold_up_other_calls() -> None:
    """A call never waits for a busy tool thread: the abandoned one keeps its thread and
    the next call gets another."""
    release = threading.Event()
    stuck, quick = _stuck_and_quick(release, 10)
    ctx = ToolContext(Settings(), tool_call_id="c1")
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stuck.invoke(stuck.validate({}), ctx), 0.1)
        started = time.monotonic()
        assert await asyncio.wait_for(quick.invoke(quick.validate({}), ctx), 2.0) == "quick"
        assert time.monotonic() - started < 1.0
    finally:
        release.set()


async def test_calculator_runs_inline_and_other_sync_tools_in_a_thread() -> None:
    """The calculator bounds every operation before it runs, so it needs no thread: the
    hand-over each way cost a GIL switch per call with many runs at once (issue 19)."""
    seen: list[threading.Thread] = []

    @tool(isolation="inline")
    def here() -> str:
        """Note the thread the call runs on."""
        seen.append(threading.current_thread())
        return "ok"

    @tool
    def elsewhere() -> str:
        """Note the thread the call runs on."""
        seen.append(threading.current_thread())
        return "ok"

    ctx = ToolContext(Settings(), tool_call_id="c1")
    assert calculator.isolation == "inline"
    assert await calculator.invoke(calculator.validate({"expression": "2 + 3"}), ctx) == "5"
    await here.invoke(here.validate({}), ctx)
    await elsewhere.invoke(elsewhere.validate({}), ctx)
    assert seen[0] is threading.current_thread()
    assert seen[1] is not threading.current_thread()


async def test_the_event_loop_never_waits_to_start_a_tool_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Thread.start()` blocks until the new thread runs; on the event loop's thread, with
    many runs at once, every run waited for each start (issue 19). A starter thread starts
    them (the loop starts that one once per process)."""
    release = threading.Event()
    starts: list[threading.Thread] = []
    start = threading.Thread.start

    def counted(self: threading.Thread) -> None:
        starts.append(threading.current_thread())
        start(self)

    monkeypatch.setattr(threading.Thread, "start", counted)

    @tool
    def wait() -> str:
        """Block until released."""
        release.wait(10)
        return "done"

    ctx = ToolContext(Settings(), tool_call_id="c1")
    calls = [asyncio.ensure_future(wait.invoke(wait.validate({}), ctx)) for _ in range(8)]
    await asyncio.sleep(0.2)  # all eight running: no idle thread was left for the last ones
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*calls), 5) == ["done"] * 8
    assert sum(t is threading.main_thread() for t in starts) <= 1  # the starter, if new


async def test_at_most_max_running_tool_threads_run_calls_at_once() -> None:
    """A thread per waiting call started ~900 threads for 1,000 runs (issue 19): a GIL
    queue, and each thread's memory. The rest wait for a thread to come free."""
    busy, most = _busy(0.2)
    ctx = ToolContext(Settings(), tool_call_id="c1")
    calls = [busy.invoke(busy.validate({}), ctx) for _ in range(MAX_RUNNING + 16)]
    assert await asyncio.wait_for(asyncio.gather(*calls), 20) == ["ok"] * (MAX_RUNNING + 16)
    assert most[0] <= MAX_RUNNING, most[0]


async def test_abandoned_calls_do_not_use_up_the_tool_threads() -> None:
    """Calls whose timeout fired keep their threads, but no longer count: with every
    thread stuck, the next call still gets one."""
    release = threading.Event()
    stuck, quick = _stuck_and_quick(release, 20)
    ctx = ToolContext(Settings(), tool_call_id="c1")
    try:
        stuck_calls = [
            asyncio.wait_for(stuck.invoke(stuck.validate({}), ctx), 0.5) for _ in range(MAX_RUNNING)
        ]
        outcomes = await asyncio.gather(*stuck_calls, return_exceptions=True)
        assert all(isinstance(o, TimeoutError) for o in outcomes)
        assert await asyncio.wait_for(quick.invoke(quick.validate({}), ctx), 2.0) == "quick"
    finally:
        release.set()


def _busy(hold_s: float) -> tuple[Any, list[int]]:
    """A sync tool that holds its thread `hold_s`, and the most calls seen running at once."""
    lock = threading.Lock()
    running, most = [0], [0]

    @tool
    def busy() -> str:
        """Hold a thread for a moment."""
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(hold_s)
        with lock:
            running[0] -= 1
        return "ok"

    return busy, most


@pytest.fixture
def default_tool_threads() -> Iterator[None]:
    """The process-wide cap put back after the test."""
    yield
    set_tool_threads(None)


def test_the_default_cap_is_python_s_own_thread_pool_size() -> None:
    """32 threads, all busy, cost a 1,000-run batch 5-15 % more CPU on two cores than the
    6 of Python's default pool, which raw LangGraph's `ToolNode` runs sync tools on."""
    with ThreadPoolExecutor() as pool:
        assert pool._max_workers == MAX_RUNNING
    assert tool_threads() == MAX_RUNNING


async def test_set_tool_threads_caps_the_calls_running_at_once(
    default_tool_threads: None,
) -> None:
    busy, most = _busy(0.05)
    set_tool_threads(2)
    ctx = ToolContext(Settings(), tool_call_id="c1")
    calls = [busy.invoke(busy.validate({}), ctx) for _ in range(8)]
    assert await asyncio.wait_for(asyncio.gather(*calls), 20) == ["ok"] * 8
    assert most[0] <= 2, most[0]


async def test_a_raised_cap_starts_threads_for_the_calls_waiting(
    default_tool_threads: None,
) -> None:
    """Calls queued behind a cap of 1 run as soon as it is raised, not one after another."""
    busy, most = _busy(0.5)
    set_tool_threads(1)
    ctx = ToolContext(Settings(), tool_call_id="c1")
    calls = asyncio.gather(*(busy.invoke(busy.validate({}), ctx) for _ in range(4)))
    await asyncio.sleep(0.1)  # one runs, three wait
    set_tool_threads(4)
    assert await asyncio.wait_for(calls, 20) == ["ok"] * 4
    assert most[0] >= 3, most[0]


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        set_tool_threads(0)
    assert tool_threads() == MAX_RUNNING


async def test_keel_tool_threads_applies_when_an_agent_opens(
    settings_factory: Callable[..., Settings], default_tool_threads: None
) -> None:
    async with open_agent(settings_factory(model="scripted:echo", tool_threads=3)):
        assert tool_threads() == 3
    async with open_agent(settings_factory(model="scripted:echo")):
        assert tool_threads() == 3, "unset leaves the process's cap as it is"
