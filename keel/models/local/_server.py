"""Start, health-check, share and stop the local model server (one per model per process).

The server runs in a child process we own (see `_worker`): it listens on 127.0.0.1 on a port
the OS picks, requires a per-start random API key, and dies with us, whether we exit normally
(atexit), or are SIGKILLed (the worker watches its stdin pipe and its parent pid).
The cached getter is loop-agnostic (threads and `concurrent.futures`), so servers survive
across `asyncio.run` calls and concurrent callers share a single start.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import secrets
import selectors
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from keel.errors import ErrorCode, LocalModelError
from keel.models.local import _worker
from keel.models.local._catalog import LocalModelInfo, get_model_info
from keel.models.local._progress import Activity
from keel.models.local._template import CHAT_TEMPLATE
from keel.models.local._weights import default_cache_dir, ensure_weights
from keel.models.local._worker import READY_PREFIX, WorkerConfig

__all__ = ["LocalServer", "ServerOptions", "get_local_server", "start_local_server"]

Progress = Callable[[str], None]
_log = structlog.get_logger(__name__)
_STOP_GRACE_S = 5.0


def _default_threads() -> int:
    """Every core (at most 8), or one if the machine is already busy when the server starts.

    llama.cpp's threads wait for each other at every step: when other work keeps one of them
    descheduled, the others wait. With the load average at ~20 on 2 cores one thread was 4x
    faster than two (`bench.local_threads`); on an idle machine every core is used.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    return 1 if os.getloadavg()[0] >= cores else min(8, cores)


@dataclass(frozen=True)
class ServerOptions:
    """How the llama.cpp server is run."""

    n_ctx: int = 8192
    """Context tokens of the single slot; KV cache ≈ 100 MB (0.5B) / 230 MB (1.5B)."""
    n_threads: int = field(default_factory=_default_threads)
    """CPU threads for generation and prompt processing (all cores, at most 8; one when the
    load average at start is already at the core count)."""
    batch_tokens: int = 512
    """Prompt tokens per batch; the server reports progress after each (stall detection)."""
    start_timeout_s: float = 180.0
    """Loading the model and answering `/health` must finish within this."""


@dataclass
class LocalServer:
    """A running local model server; `base_url` is OpenAI-compatible."""

    info: LocalModelInfo
    process: subprocess.Popen[bytes]
    base_url: str
    """E.g. `http://127.0.0.1:41234/v1`."""
    api_key: str
    """Random per start: other local users cannot use the server."""
    load_seconds: float
    log_path: Path
    activity: Activity = field(default_factory=Activity)
    """When any call of this process last saw the server progress (shared stall clock)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Close the worker's pipe (it exits at once), then kill it if it lingers."""
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        _live.discard(self)
        _log.info("local_model.server_stopped", model=self.info.name, pid=proc.pid)

    def __hash__(self) -> int:
        return id(self)


_live: set[LocalServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start_failed(info: LocalModelInfo, why: str, log_path: Path) -> LocalModelError:
    tail = _log_tail(log_path)
    detail = f"\n--- last lines of {log_path} ---\n{tail}" if tail else ""
    return LocalModelError(
        f"local model server for local:{info.name} {why}{detail}",
        code=ErrorCode.LOCAL_MODEL_UNAVAILABLE,
    )


def _read_ready_line(proc: subprocess.Popen[bytes], deadline: float) -> str | None:
    """The listening address the worker prints once the model is loaded, or None."""
    assert proc.stdout is not None
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
                if proc.poll() is not None:
                    return None
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    return str(json.loads(line[len(READY_PREFIX) :])["address"])
    return None


def _wait_healthy(address: str, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Poll `/health` (public, 503 while loading) until it answers 200."""
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def start_local_server(
    name: str,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    options: ServerOptions | None = None,
) -> LocalServer:
    """Verify the weights and start a new server for `name` (blocking; not cached).

    Most callers want `get_local_server`, which shares one server per model per process.
    """
    info = get_model_info(name)
    report = progress or (lambda _msg: None)
    opts = options or ServerOptions()
    cache = cache_dir or default_cache_dir()
    gguf = ensure_weights(info.name, cache, report)
    report(f"loading local:{info.name}")
    started = time.monotonic()
    log_path = cache / f"{info.name}.server.log"
    api_key = secrets.token_urlsafe(24)
    config: WorkerConfig = {
        "model_path": str(gguf),
        "alias": info.name,
        "chat_template": CHAT_TEMPLATE,
        "n_ctx": min(opts.n_ctx, info.context_length),
        "n_threads": opts.n_threads,
        "n_batch": opts.batch_tokens,
        "api_key": api_key,
        "parent_pid": os.getpid(),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(_worker.__file__))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    assert proc.stdin is not None
    server = LocalServer(info, proc, "", api_key, 0.0, log_path)
    _live.add(server)
    try:
        proc.stdin.write(json.dumps(config).encode() + b"\n")
        proc.stdin.flush()
        deadline = started + opts.start_timeout_s
        address = _read_ready_line(proc, deadline)
        if address is None or not _wait_healthy(address, proc, deadline):
            why = "exited while starting" if proc.poll() is not None else "timed out"
            raise _start_failed(info, f"{why} (limit {opts.start_timeout_s:.0f} s)", log_path)
    except BaseException:
        server.stop()
        raise
    server.base_url = f"{address}/v1"
    server.load_seconds = time.monotonic() - started
    report(f"local:{info.name} ready at {address} ({server.load_seconds:.1f} s)")
    _log.info(
        "local_model.server_started",
        model=info.name,
        pid=proc.pid,
        address=address,
        load_s=round(server.load_seconds, 2),
    )
    return server


_starts: dict[str, concurrent.futures.Future[LocalServer]] = {}
_starts_lock = threading.Lock()


async def get_local_server(
    name: str,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    options: ServerOptions | None = None,
) -> LocalServer:
    """The process-wide server for `name`, started on first use; restarted if it died.

    Concurrent callers await the same start; a failed start is not cached. `progress` is
    called from a worker thread.
    """
    key = get_model_info(name).name
    with _starts_lock:
        future = _starts.get(key)
        if future is not None and future.done():
            alive = not future.exception() and future.result().is_running()
            if not alive:
                future = None
        if future is None:
            future = concurrent.futures.Future()
            _starts[key] = future
            owner = True
        else:
            owner = False
    if owner:
        threading.Thread(
            target=_run_start,
            args=(future, key, cache_dir, progress, options),
            name=f"keel-start-{key}",
            daemon=True,
        ).start()
    return await asyncio.wrap_future(future)


def _run_start(
    future: concurrent.futures.Future[LocalServer],
    key: str,
    cache_dir: Path | None,
    progress: Progress | None,
    options: ServerOptions | None,
) -> None:
    try:
        future.set_result(start_local_server(key, cache_dir, progress, options))
    except BaseException as exc:
        with _starts_lock:
            if _starts.get(key) is future:
                del _starts[key]
        future.set_exception(exc)
