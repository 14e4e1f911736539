"""Child process that hosts xllamacpp's OpenAI-compatible server; run as a script.

xllamacpp runs llama.cpp's HTTP server on threads *inside* the calling process and installs
its own SIGINT/SIGTERM handlers there, so Keel keeps it out of the agent's process: a crash in
native code cannot take the agent down, Ctrl+C keeps working, and the memory is returned when
the server stops. The parent writes one JSON line of `WorkerConfig` on stdin and keeps the
pipe open; the worker exits as soon as that pipe reaches EOF (the parent exited or was
SIGKILLed) or the parent pid changes, so no server outlives its owner. It imports nothing
from Keel, so the child starts without loading LangChain.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import TypedDict

__all__ = ["READY_PREFIX", "WorkerConfig", "main"]

READY_PREFIX = "KEEL_LOCAL_SERVER_READY "
"""Marks the stdout line carrying the listening address."""


class WorkerConfig(TypedDict):
    """What the parent sends on the first stdin line."""

    model_path: str
    alias: str
    chat_template: str
    n_ctx: int
    n_threads: int
    n_batch: int
    api_key: str
    parent_pid: int


def _exit_when_orphaned(parent_pid: int) -> None:
    """Exit at once when the parent is gone: stdin EOF, or reparenting as a fallback."""

    def watch_pipe() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        os._exit(0)

    def watch_pid() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_pipe, name="keel-parent-pipe", daemon=True).start()
    threading.Thread(target=watch_pid, name="keel-parent-pid", daemon=True).start()


def _serve(config: WorkerConfig) -> str:
    import xllamacpp  # type: ignore[import-untyped]

    params = xllamacpp.CommonParams()
    params.model.path = config["model_path"]
    params.model_alias = {config["alias"]}
    params.chat_template = config["chat_template"]
    params.use_jinja = True
    params.n_ctx = config["n_ctx"]
    params.n_parallel = 1  # one call at a time; others queue (on 2 cores they would only split it)
    params.n_batch = config["n_batch"]
    params.n_ubatch = min(params.n_ubatch, config["n_batch"])
    params.cpuparams.n_threads = config["n_threads"]
    params.cpuparams_batch.n_threads = config["n_threads"]
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = [config["api_key"]]
    params.offline = True
    params.ui = False
    params.endpoint_slots = False
    server = xllamacpp.Server(params)
    _keepalive.append(server)
    return str(server.listening_address)


_keepalive: list[object] = []


def main() -> None:
    config: WorkerConfig = json.loads(sys.stdin.readline())
    _exit_when_orphaned(config["parent_pid"])
    try:
        address = _serve(config)
    except Exception as exc:  # reported to the parent through stderr and the exit code
        print(f"local server failed to start: {exc}", file=sys.stderr, flush=True)
        os._exit(3)
    print(READY_PREFIX + json.dumps({"address": address}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
