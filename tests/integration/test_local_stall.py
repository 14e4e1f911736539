"""A `local:` model call is timed by progress, not by a total: busy is slow, stuck fails.

A stand-in for the llama.cpp server (OpenAI-compatible SSE on 127.0.0.1) streams its reply
slowly but steadily, as the real one does on a loaded machine (a `prompt_progress` chunk,
then one token at a time, usage in the last chunk), or sends nothing but SSE keepalive
comments, as a stuck one would. It serves one call at a time and queues the others, like the
real server with one slot.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
from aiohttp import web

from keel.config import Settings, load_settings
from keel.errors import ErrorCode
from keel.models.local import (
    Activity,
    LocalChatOpenAI,
    LocalModelStalledError,
    server_chat_model,
)
from keel.runtime import open_agent
from keel.tools.registry import ToolRegistry

pytestmark = pytest.mark.asyncio

ANSWER_WORDS = ["There", " are", " 42", " customers", "."]


class SlowServer:
    """`POST /v1/chat/completions` (stream only) in a background thread; one call at a time."""

    def __init__(self, mode: Literal["steady", "stuck"], gap_s: float, tokens: int) -> None:
        self.mode = mode
        self.gap_s = gap_s
        self.tokens = tokens
        self.requests: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async with self._slot:
            if self.mode == "stuck":
                while True:  # alive (keepalives) but never a chunk
                    await response.write(b": keepalive\n\n")
                    await asyncio.sleep(self.gap_s)
            await self._send(response, {"delta": {"role": "assistant", "content": None}},
                             prompt_progress={"total": 50, "processed": 50})  # fmt: skip
            for n in range(self.tokens):
                await asyncio.sleep(self.gap_s)
                word = ANSWER_WORDS[n % len(ANSWER_WORDS)] if n < len(ANSWER_WORDS) else ""
                await self._send(response, {"delta": {"content": word}})
            await self._send(response, {"delta": {}, "finish_reason": "stop"})
            usage = {"prompt_tokens": 50, "completion_tokens": self.tokens}
            usage["total_tokens"] = 50 + self.tokens
            await self._send(response, None, usage=usage)
            await response.write(b"data: [DONE]\n\n")
        return response

    @staticmethod
    async def _send(
        response: web.StreamResponse, choice: dict[str, Any] | None, **extra: Any
    ) -> None:
        chunk = {
            "id": "chatcmpl-slow",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "qwen2.5-coder-0.5b",
            "choices": [] if choice is None else [{"index": 0, "finish_reason": None, **choice}],
            **extra,
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    def __enter__(self) -> SlowServer:
        ready = threading.Event()

        async def serve() -> None:
            self._slot = asyncio.Lock()
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._handle)
            self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
            await self._runner.setup()
            await web.SockSite(self._runner, self._sock).start()
            ready.set()

        self._thread = threading.Thread(
            target=lambda: (self._loop.run_until_complete(serve()), self._loop.run_forever()),
            daemon=True,
        )
        self._thread.start()
        assert ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def slow_server() -> Iterator[Callable[..., SlowServer]]:
    servers: list[SlowServer] = []

    def make(mode: Literal["steady", "stuck"], gap_s: float = 0.2, tokens: int = 15) -> SlowServer:
        server = SlowServer(mode, gap_s, tokens).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__()


def local_model(
    server: SlowServer, stall_s: float, activity: Activity | None = None
) -> LocalChatOpenAI:
    """The model `local_chat_model` builds, pointed at the stand-in server."""
    settings = load_settings(checkpoint_url="memory://", local={"stall_timeout_s": stall_s})
    return server_chat_model(
        server.base_url, "test-key", "qwen2.5-coder-0.5b", settings, activity or Activity()
    )


def run_settings(settings_factory: Callable[..., Settings], **limits: Any) -> Settings:
    return settings_factory(
        grounded_answers=False,
        compose_answers="never",
        cache={"backend": "none"},
        limits={"max_model_attempts": 2, **limits},
    )


async def test_a_slow_but_steady_local_call_outlives_the_model_timeout(
    settings_factory: Callable[..., Settings], slow_server: Callable[..., SlowServer]
) -> None:
    """A reply streamed over ~3 s, with a token every 0.2 s, under a 1 s model timeout and a
    1 s iteration timeout: the run succeeds (it failed on `model_timeout` while either cut
    every call at 1 s), and its usage is the stream's."""
    server = slow_server("steady", gap_s=0.2, tokens=15)
    settings = run_settings(settings_factory, model_timeout_s=1.0, iteration_timeout_s=1.0)
    model = local_model(server, stall_s=1.0)
    async with open_agent(settings, model=model, tools=ToolRegistry.of([])) as agent:
        started = time.perf_counter()
        result = await agent.arun("How many customers are there?")
        elapsed = time.perf_counter() - started
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success, (result.error_code, result.output)
    assert "42 customers" in result.output
    assert elapsed > 2.5  # it really was slower than the model timeout
    assert len(server.requests) == 1
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["return_progress"] is True
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    usage = state["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["model_calls"]) == (50, 15, 1)


async def test_a_stuck_local_server_fails_within_the_stall_timeout(
    settings_factory: Callable[..., Settings], slow_server: Callable[..., SlowServer]
) -> None:
    """No chunk at all (only keepalives, which reset a socket's read timeout): each attempt
    ends after the 1 s stall timeout, long before the 60 s model timeout, as a model timeout."""
    server = slow_server("stuck", gap_s=0.2)
    settings = run_settings(settings_factory, model_timeout_s=60.0)
    model = local_model(server, stall_s=1.0)
    async with open_agent(settings, model=model, tools=ToolRegistry.of([])) as agent:
        started = time.perf_counter()
        result = await agent.arun("How many customers are there?")
        elapsed = time.perf_counter() - started
    assert not result.success
    assert result.error_code == ErrorCode.MODEL_TIMEOUT
    assert len(server.requests) == 2  # both attempts, each cut at the stall timeout
    assert elapsed < 15
    failures = [s["observation"] or "" for s in result.metadata.trace if s["error_code"]]
    assert any("made no progress" in text for text in failures), failures


async def test_a_direct_stuck_call_raises_a_timeout_after_the_stall() -> None:
    """The error is a `TimeoutError` (retried as `model_timeout`), raised at the stall."""
    with SlowServer("stuck", gap_s=0.2, tokens=0) as server:
        started = time.perf_counter()
        with pytest.raises(LocalModelStalledError) as raised:
            await local_model(server, stall_s=0.8).ainvoke("hi")
        elapsed = time.perf_counter() - started
    assert isinstance(raised.value, TimeoutError)
    assert 0.7 < elapsed < 5


@pytest.mark.parametrize("shared", [True, False])
async def test_a_queued_call_waits_while_the_one_ahead_progresses(
    slow_server: Callable[..., SlowServer], shared: bool
) -> None:
    """Two calls at once to a one-slot server: the second gets no chunk for ~2 s (the first
    is streaming), longer than the 1 s stall timeout. Sharing the server's progress clock,
    both finish; with a clock of its own, the queued call would be taken for stuck."""
    server = slow_server("steady", gap_s=0.2, tokens=10)
    first_clock = Activity()
    first = local_model(server, stall_s=1.0, activity=first_clock)
    second = local_model(server, stall_s=1.0, activity=first_clock if shared else Activity())
    results = await asyncio.gather(
        first.ainvoke("one"), second.ainvoke("two"), return_exceptions=True
    )
    if shared:
        assert [type(r).__name__ for r in results] == ["AIMessage", "AIMessage"]
    else:
        assert sorted(type(r).__name__ for r in results) == ["AIMessage", "LocalModelStalledError"]
