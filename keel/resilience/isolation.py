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
from typing import Any

from keel.errors import ToolDefinitionError, ToolError

__all__ = ["check_importable", "run_in_process", "run_in_thread"]

_SPAWN = multiprocessing.get_context("spawn")
KILL_WAIT_S = 5.0


Call = Callable[[], Callable[[], None]]
"""A call to run on a tool thread; it returns what reports its outcome."""
IDLE_S = 30.0
"""How long an idle tool thread waits for another call before it exits."""


class _Threads:
    """Daemon threads reused from one sync tool call to the next.

    A call goes to an idle thread if there is one, else a new thread is started for it: it
    never waits for another call, so a stuck call delays nothing but itself, as with a
    thread per call. Not a `ThreadPoolExecutor`: its threads are joined at interpreter exit
    (an abandoned call would hold the exit up) and it queues calls once `max_workers` are
    busy.

    The event loop never starts a thread itself: `Thread.start()` blocks until the new
    thread runs, with many runs at once a GIL hand-over and back that stalled every run
    (issue 19: 5,000 starts cost 8.7 s of a 1,000-run batch). A starter thread starts them;
    meanwhile the call waits in `_calls`, and whichever thread comes free first takes it.

    A call returns what reports its outcome, run once the thread counts as idle: the caller
    woken by the report finds the thread free for its next call. Under `_lock`, `_idle`
    counts the threads waiting in `_calls` plus those being started, less the calls queued.
    """

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._wanted: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._idle_s = idle_s
        self._starter: threading.Thread | None = None

    def submit(self, call: Call) -> None:
        with self._lock:
            self._calls.put(call)
            if self._idle:
                self._idle -= 1
                return
            starter, first = self._starter, self._starter is None
            if starter is None:
                starter = self._starter = threading.Thread(
                    target=self._start_threads, name="keel-tool-starter", daemon=True
                )
        self._wanted.put(None)
        if first:
            starter.start()  # once per process

    def _start_threads(self) -> None:
        while True:
            self._wanted.get()
            try:
                threading.Thread(target=self._work, name="keel-tool", daemon=True).start()
            except RuntimeError:  # no thread to be had: the call waits for one to come free
                continue

    def _work(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._calls.empty():  # no call was handed over meanwhile
                        self._idle -= 1
                        return
                continue
            report = call()
            del call  # nothing of a finished call stays alive while the thread waits
            with self._lock:
                self._idle += 1
            report()
            del report


_THREADS = _Threads()


def _forget_threads() -> None:
    """A forked child has none of its parent's threads: start it with no idle ones."""
    global _THREADS
    _THREADS = _Threads()


os.register_at_fork(after_in_child=_forget_threads)


async def run_in_thread(func: Callable[..., Any], kwargs: dict[str, Any], *, name: str) -> Any:
    """`func(**kwargs)` in a daemon tool thread, with the caller's context variables.

    Cancelling the await (a tool timeout) abandons the thread at once; its late result or
    error is dropped, and the thread never delays the loop's or the interpreter's shutdown.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> Callable[[], None]:
        thread = threading.current_thread()
        thread.name = f"keel-tool-{name}"
        try:
            value, error = context.run(func, **kwargs), None
        except BaseException as exc:
            value, error = None, exc
        thread.name = "keel-tool"

        def report() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(settle, value, error)

        return report

    _THREADS.submit(target)
    return await future


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
