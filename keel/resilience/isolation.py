"""Where a sync tool function runs: a daemon thread, or a separate process a timeout can kill.

A thread cannot be stopped: a sync tool that hangs in a worker thread is abandoned, and
keeps its thread (and whatever it holds). `run_in_thread` makes that abandonment cheap: a
call runs on an idle daemon thread of Keel's own, or on a new one when none is idle, outside
the event loop's default executor, so a stuck call neither takes one of the executor's few
workers (nor waits for one) nor makes `asyncio.run` (and so `keel.run`) wait for it at exit.
`run_in_process` runs the function in a fresh
`spawn`ed child instead; when the awaiting task is cancelled (the tool timeout fires, the
run is cancelled) the child is killed. Arguments and results cross a pipe, so both must
pickle, and the function must be importable by module and qualified name (a module-level
function, or a module-level `@tool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Literal

from keel.errors import ToolDefinitionError, ToolError

__all__ = [
    "MAX_RUNNING",
    "check_importable",
    "run_in_process",
    "run_in_thread",
    "set_tool_threads",
    "tool_threads",
]

_SPAWN = multiprocessing.get_context("spawn")
KILL_WAIT_S = 5.0


Call = Callable[[], Callable[[], None]]
"""A call to run on a tool thread; it returns what reports its outcome."""
IDLE_S = 30.0
"""How long an idle tool thread waits for another call before it exits."""
MAX_RUNNING = min(32, (os.cpu_count() or 1) + 4)
"""Tool threads running calls at once by default, not counting calls their callers gave up
on: as many as Python's own default thread pool (`ThreadPoolExecutor`, the event loop's
`run_in_executor`) has. More, all busy, cost CPU in hand-overs of the GIL: at 1,000 runs
at once on two cores, 32 threads cost a batch 5-15 % more CPU than 6 (7 % on average in
`bench.concurrency`; issue 19).
`KEEL_TOOL_THREADS` (`set_tool_threads`) raises it for sync tools that mostly wait."""


class _Job:
    """One call's place in `_Threads`: queued, running, done; `abandoned` once its caller
    gave up on it while it ran."""

    __slots__ = ("abandoned", "state")

    def __init__(self) -> None:
        self.state: Literal["queued", "running", "done", "skipped"] = "queued"
        self.abandoned = False


class _Threads:
    """Daemon threads reused from one sync tool call to the next, at most `most` running
    calls at once besides the calls their callers gave up on.

    Not a `ThreadPoolExecutor`: its threads are joined at interpreter exit (an abandoned
    call would hold the exit up), and a stuck call would keep one of its workers for good.
    Here a call whose caller gave up (its timeout fired) no longer counts against `most`:
    the next call gets another thread, so stuck calls never use up the capacity. A call
    waits in `_calls` only while `most` others run (its timeout runs meanwhile).

    The event loop never starts a thread itself: `Thread.start()` blocks until the new
    thread runs, with many runs at once a GIL hand-over and back that stalled every run
    (issue 19: 5,052 starts cost 7.4-9.6 s of a 1,000-run batch's wall time). A starter
    thread starts them; the call waits in `_calls` for whichever thread comes free first.
    Threads, not one per call, because a thousand runs started ~900 at once then (a GIL
    queue, and each thread's memory).

    Under `_lock`: `_idle` is the threads waiting in `_calls` plus those being started,
    less the calls (and the `None`s telling a thread to exit) queued (negative: calls
    waiting for a thread); `_threads` counts the threads alive or being started,
    `_abandoned` those running an abandoned call. `_room()` is how many more threads the cap
    allows (negative: that many too many); a thread that ends a call while it is negative
    exits instead of waiting for the next.
    """

    def __init__(self, idle_s: float = IDLE_S, most: int = MAX_RUNNING) -> None:
        self._calls: queue.SimpleQueue[tuple[_Job, Call] | None] = queue.SimpleQueue()
        self._wanted: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._abandoned = 0
        self._idle_s = idle_s
        self._most = most
        self._starter: threading.Thread | None = None

    @property
    def most(self) -> int:
        return self._most

    def resize(self, most: int) -> None:
        """Let `most` calls run at once from now on. Calls waiting for a thread get one at
        once if there is room now; under a lower cap, idle threads beyond it exit, and
        running ones exit when their call ends."""
        if most < 1:
            raise ValueError(f"tool threads must be at least 1, got {most}")
        with self._lock:
            self._most = most
            while self._more_if_needed():
                pass
            for _ in range(min(-self._room(), self._idle)):
                self._calls.put(None)  # an idle thread takes it and exits
                self._idle -= 1

    def submit(self, call: Call) -> _Job:
        job = _Job()
        with self._lock:
            self._calls.put((job, call))
            self._idle -= 1
            self._more_if_needed()
        return job

    def give_up(self, job: _Job) -> None:
        """The caller no longer waits: a queued call is skipped; a running one stops
        counting against `most` (another thread may start for the calls waiting)."""
        with self._lock:
            if job.state == "queued":
                job.state = "skipped"
            elif job.state == "running" and not job.abandoned:
                job.abandoned = True
                self._abandoned += 1
                self._more_if_needed()

    def _room(self) -> int:
        """With `_lock` held: threads the cap allows beyond those alive or being started,
        not counting the ones running abandoned calls (negative: that many too many)."""
        return self._most - (self._threads - self._abandoned)

    def _more_if_needed(self) -> bool:
        """With `_lock` held: ask for a thread if a call waits and there is room (True if
        it did)."""
        if self._idle < 0 and self._room() > 0:
            self._idle += 1
            self._threads += 1
            if self._starter is None:
                self._starter = threading.Thread(
                    target=self._start_threads, name="keel-tool-starter", daemon=True
                )
                self._starter.start()  # once per process
            self._wanted.put(None)
            return True
        return False

    def _start_threads(self) -> None:
        while True:
            self._wanted.get()
            try:
                threading.Thread(target=self._work, name="keel-tool", daemon=True).start()
            except RuntimeError:  # no thread to be had: the call waits for one to come free
                with self._lock:
                    self._idle -= 1
                    self._threads -= 1

    def _work(self) -> None:
        while True:
            try:
                taken = self._calls.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._calls.empty():  # no call was handed over meanwhile
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if taken is None:  # the cap was lowered: one thread fewer
                with self._lock:
                    self._threads -= 1
                return
            job, call = taken
            with self._lock:
                run = job.state == "queued"
                job.state = "running" if run else job.state
            report = call() if run else None
            with self._lock:
                job.state = "done" if run else job.state
                if job.abandoned:
                    self._abandoned -= 1
                surplus = self._room() < 0
                if surplus:  # over the cap (lowered, or an abandoned call came back)
                    self._threads -= 1
                else:
                    self._idle += 1
            del job, call, taken  # nothing of a finished call stays alive while it waits
            if report is not None:
                report()
                del report
            if surplus:
                return


_THREADS = _Threads()


def _forget_threads() -> None:
    """A forked child has none of its parent's threads: start it with no idle ones."""
    global _THREADS
    _THREADS = _Threads(most=_THREADS.most)


os.register_at_fork(after_in_child=_forget_threads)


def tool_threads() -> int:
    """How many sync tool calls may run at once in this process (besides abandoned ones)."""
    return _THREADS.most


def set_tool_threads(most: int | None) -> None:
    """Let `most` sync tool calls run at once in this process (None: `MAX_RUNNING`).
    Process-wide, like the threads: `open_agent` applies `KEEL_TOOL_THREADS` when set."""
    _THREADS.resize(MAX_RUNNING if most is None else most)


async def run_in_thread(func: Callable[..., Any], kwargs: dict[str, Any], *, name: str) -> Any:
    """`func(**kwargs)` in a daemon tool thread, with the caller's context variables.

    Cancelling the await (a tool timeout) abandons the call at once: a queued call never
    runs; a running one keeps its thread, but another thread may start in its place; its
    late result or error is dropped, and the thread never delays the loop's or the
    interpreter's shutdown.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    threads = _THREADS
    job = threads.submit(_ThreadCall(loop, future, func, kwargs, name))
    try:
        return await future
    except BaseException:
        threads.give_up(job)
        raise


class _ThreadCall:
    """One `run_in_thread` call: run on a tool thread (`__call__`), reported back to the
    loop (`report`, then `settle` there). One object rather than three closures, whose
    cells stayed alive, one each, for every call's length."""

    __slots__ = ("context", "error", "func", "future", "kwargs", "loop", "name", "value")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        name: str,
    ) -> None:
        self.loop, self.future, self.func, self.kwargs, self.name = loop, future, func, kwargs, name
        self.context = contextvars.copy_context()
        self.value: Any = None
        self.error: BaseException | None = None

    def __call__(self) -> Callable[[], None]:
        """On the tool thread: run the function; return what reports its outcome."""
        thread = threading.current_thread()
        thread.name = f"keel-tool-{self.name}"
        try:
            self.value = self.context.run(self.func, **self.kwargs)
        except BaseException as exc:
            self.error = exc
        thread.name = "keel-tool"
        return self.report

    def report(self) -> None:
        """On the tool thread, once the call is counted done: hand the outcome to the loop."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            self.loop.call_soon_threadsafe(self.settle)

    def settle(self) -> None:
        """On the loop: the awaiting future gets the value or the error."""
        error, self.error = self.error, None  # the future holds it now: no cycle through us
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(self.value)


def check_importable(func: Callable[..., Any], name: str) -> None:
    """Refuse, at definition time, a function a child process could not import."""
    if "<locals>" in func.__qualname__ or func.__module__ in ("__main__", "__mp_main__"):
        raise ToolDefinitionError(
            f"tool '{name}' runs in a separate process, so its function must be defined at "
            "module level in an importable module"
        )


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    func = getattr(target, "func", target)  # a module-level @tool names the Tool
    if not callable(func):
        raise TypeError(f"{module}.{qualname} is not callable")
    return func


def _child(conn: Connection, module: str, qualname: str, kwargs: dict[str, Any]) -> None:
    try:
        result = _resolve(module, qualname)(**kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        conn.send(("ok", result))
    except BaseException as exc:
        try:
            conn.send(("error", exc))
        except Exception:  # the exception itself does not pickle
            conn.send(("error", ToolError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


async def run_in_process(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """`func(**kwargs)` in a child process; the child is killed if this is cancelled."""
    receiver, sender = _SPAWN.Pipe(duplex=False)
    proc = _SPAWN.Process(
        target=_child,
        args=(sender, func.__module__, func.__qualname__, kwargs),
        daemon=True,
        name=f"keel-tool-{func.__name__}",
    )
    proc.start()
    sender.close()
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(receiver.fileno(), wake)
    try:
        await readable
        try:
            status, value = receiver.recv()
        except EOFError:
            await asyncio.to_thread(proc.join, KILL_WAIT_S)
            raise ToolError(
                f"the tool process exited without a result (exit code {proc.exitcode})"
            ) from None
    finally:
        loop.remove_reader(receiver.fileno())
        receiver.close()
        if proc.is_alive():
            proc.kill()
        proc.join(KILL_WAIT_S)
        proc.close()
    if status == "error":
        raise value
    return value
