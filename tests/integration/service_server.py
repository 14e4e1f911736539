"""A real Keel API server on 127.0.0.1 for the service tests (uvicorn in a thread)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.types import interrupt

from keel.config import Settings
from keel.server.app import create_app
from keel.server.handles import ASSISTANT_ID
from keel.server.store import RunRecord, Store, now
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.registry import tool
from tests.conftest import fresh_database


@contextmanager
def running_server(settings: Settings, **app_kwargs: Any) -> Iterator[str]:
    """Serve `create_app(settings)` on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, **app_kwargs), log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextmanager
def sales_server_on(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path, db_prefix: str
) -> Iterator[str]:
    """`keel serve` with in-process runs and the scripted sales model, its checkpoints and
    tables on SQLite (`backend="sqlite"`) or a fresh Postgres database named `db_prefix_…`."""
    with ExitStack() as stack:
        if backend == "sqlite":
            checkpoint_url = f"sqlite:///{tmp_path / 'cp.sqlite'}"
        else:
            checkpoint_url, _ = stack.enter_context(fresh_database(db_prefix))
        settings = settings_factory(model="scripted:sales", checkpoint_url=checkpoint_url)
        yield stack.enter_context(running_server(settings))


@tool(idempotent=True)
async def nap(seconds: float) -> str:
    """Wait a while (slow work, for cancellation tests)."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


OPEN_GATES: set[str] = set()


@tool(idempotent=True)
async def hold(gate: str) -> str:
    """Wait until the test opens `gate` (work that ends when the test says, not after a time
    that a loaded machine may spend before the test's next request)."""
    for _ in range(6000):  # a minute at most
        if gate in OPEN_GATES:
            break
        await asyncio.sleep(0.01)
    return f"gate {gate} opened"


@tool(idempotent=True)
async def ask_human(question: str) -> str:
    """Ask a person and wait for the answer."""
    answer = interrupt({"question": question})
    return f"the human said: {answer}"


def tool_once_model(first_tool: str, args: dict[str, Any]) -> FunctionModel:
    """Calls `first_tool` once per question, then answers with what it returned."""

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"done: {last.content}")
        return AIMessage(
            content="",
            tool_calls=[{"name": first_tool, "args": args, "id": f"call_{info.index}"}],
        )

    return FunctionModel(fn=reply, model_name="scripted:tool-once")


@contextmanager
def workers(
    setup: dict[str, Any], count: int, concurrency: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs, logs = [], []
    for i in range(count):
        log = open(setup["logs"] / f"worker{i}.log", "wb")  # noqa: SIM115
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "keel", "worker", "--concurrency", str(concurrency)],
                env=setup["env"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


async def pending_run(store: Store, kwargs: dict[str, Any]) -> tuple[str, str]:
    """A new thread with one pending run of the built-in assistant, as the API records it
    before a worker takes the job: (thread id, run id)."""
    thread_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    await store.create_thread(thread_id, "default", {})
    at = now()
    record = RunRecord(
        run_id=run_id,
        thread_id=thread_id,
        tenant_id="default",
        assistant_id=ASSISTANT_ID,
        status="pending",
        multitask_strategy="reject",
        metadata={},
        kwargs={"assistant_id": ASSISTANT_ID, **kwargs},
        created_at=at,
        updated_at=at,
    )
    await store.create_run(record)
    return thread_id, run_id
