"""A chaos harness: an OpenAI-compatible chat-completions server that misbehaves on purpose.

```python
with ChaosServer(solve_task, faults=FaultPlan(rate=0.3, seed=7)) as server:
    settings = load_settings(model="openai:chaos", openai_base_url=server.base_url, ...)
```
The server listens on 127.0.0.1 (a background thread with its own event loop) and answers
`POST /v1/chat/completions` with what a policy — `fn(messages, info) -> AIMessage | str`, the
same signature `FunctionModel` takes — says the model would reply. Before answering it may
inject a fault:

| kind | what the client sees |
|---|---|
| `rate_limit` | HTTP 429 with `Retry-After` / `retry-after-ms` |
| `server_error` / `unavailable` | HTTP 500 / 503 |
| `reset` | the TCP connection reset mid-request (RST, no response) |
| `hang` | no response for `hang_s` (past the client's timeout) |
| `malformed_args` | a tool call whose `arguments` is not valid JSON |
| `unknown_tool` | a call to a tool that does not exist |
| `empty` | an empty reply (no content, no tool calls) |
| `truncated` | the reply cut in half with `finish_reason: "length"` |
| `unauthorized` / `context_too_long` | HTTP 401 / 400 (context length; not in the default mix) |

Faults are deterministic: whether request `n` of a conversation turn faults is a hash of
(seed, first user message, assistant turns so far, attempt), so two agents sent the same
questions meet the same faults, and a retry is a fresh draw. `force(...)` queues exact
faults for the next requests (tests). `chaos_tool` wraps a `Tool` the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import struct
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from aiohttp import web
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)

from keel.errors import ToolTransientError
from keel.testing.scripted import CallInfo, Reply, approx_tokens

if TYPE_CHECKING:  # keel may not import tools at run time (layering)
    from keel.tools.registry import Tool

__all__ = [
    "FAULT_KINDS",
    "ChaosServer",
    "ChaosStats",
    "FaultKind",
    "FaultPlan",
    "Policy",
    "chaos_tool",
]

FaultKind = Literal[
    "rate_limit",
    "server_error",
    "unavailable",
    "reset",
    "hang",
    "malformed_args",
    "unknown_tool",
    "empty",
    "truncated",
    "unauthorized",
    "context_too_long",
]
_ON_REQUEST_ONLY = ("unauthorized", "context_too_long")
"""Faults only `force()` injects; the random mix never draws them."""
FAULT_KINDS: tuple[FaultKind, ...] = tuple(
    kind for kind in get_args(FaultKind) if kind not in _ON_REQUEST_ONLY
)
Policy = Callable[[list[BaseMessage], CallInfo], Reply]
UNKNOWN_TOOL = "lookup_everything"


@dataclass(frozen=True)
class FaultPlan:
    """Which faults, how often, from which seed."""

    rate: float = 0.0
    """Share of requests that get a fault."""
    kinds: tuple[FaultKind, ...] = FAULT_KINDS
    """Faults drawn from, uniformly."""
    seed: int = 0
    """Same seed, same questions: same faults."""
    retry_after_s: float = 0.05
    """What a 429 asks the client to wait."""
    hang_s: float = 30.0
    """How long a `hang` keeps the client waiting."""


@dataclass
class ChaosStats:
    """What the server did, for assertions and the benchmark."""

    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    by_question: dict[str, list[str]] = field(default_factory=dict)
    """Faults injected per conversation (keyed by its first user message)."""
    requests_by_question: Counter[str] = field(default_factory=Counter)
    """Requests received per conversation (every attempt counts)."""
    models: list[str] = field(default_factory=list)
    """The `model` of every request, in order (which tier was called)."""
    prompt_tokens_by_question: Counter[str] = field(default_factory=Counter)
    completion_tokens_by_question: Counter[str] = field(default_factory=Counter)
    """Tokens of the replies served per conversation: what a provider would bill."""


def _to_messages(raw: Sequence[dict[str, Any]]) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for m in raw:
        role, content = m.get("role"), m.get("content") or ""
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if role in ("system", "developer"):
            out.append(SystemMessage(content))
        elif role == "user":
            out.append(HumanMessage(content))
        elif role == "tool":
            out.append(ToolMessage(content, tool_call_id=m.get("tool_call_id", "")))
        else:
            calls = []
            for c in m.get("tool_calls") or []:
                try:
                    args = json.loads(c["function"]["arguments"] or "{}")
                except ValueError:
                    args = {}
                calls.append(ToolCall(name=c["function"]["name"], args=args, id=c.get("id")))
            out.append(AIMessage(content=content, tool_calls=calls))
    return out


def _completion(
    model: str, content: str | None, calls: list[dict[str, Any]], finish: str, prompt: int
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    completion = approx_tokens((content or "") + json.dumps(calls))
    return {
        "id": "chatcmpl-chaos",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _wire_calls(reply: AIMessage) -> list[dict[str, Any]]:
    return [
        {
            "id": c.get("id") or f"call_{i}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
        }
        for i, c in enumerate(reply.tool_calls)
    ]


class ChaosServer:
    """The fault-injecting chat-completions server (see the module docstring)."""

    def __init__(
        self, policy: Policy, *, faults: FaultPlan | None = None, host: str = "127.0.0.1"
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the chaos server only listens on loopback")
        self.policy = policy
        self.plan = faults or FaultPlan()
        self.host = host
        self.port = 0
        self.stats = ChaosStats()
        self._seen: Counter[str] = Counter()
        self._forced: deque[FaultKind | None] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def force(self, *kinds: FaultKind | None) -> None:
        """The next requests get exactly these faults (`None`: a clean reply), then the plan."""
        with self._lock:
            self._forced.extend(kinds)

    def reset(self, faults: FaultPlan | None = None) -> None:
        """Forget counts and stats (so another agent meets the same fault sequence)."""
        with self._lock:
            self.stats = ChaosStats()
            self._seen.clear()
            self._forced.clear()
            if faults is not None:
                self.plan = faults

    def _draw(self, key: str, attempt: int) -> FaultKind | None:
        with self._lock:
            if self._forced:
                return self._forced.popleft()
        digest = hashlib.sha256(f"{self.plan.seed}|{key}|{attempt}".encode()).digest()
        roll = int.from_bytes(digest[:8], "big") / 2**64
        if roll >= self.plan.rate or not self.plan.kinds:
            return None
        return self.plan.kinds[int.from_bytes(digest[8:16], "big") % len(self.plan.kinds)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("stream"):
            return web.json_response(
                {"error": {"message": "streaming is not supported by the chaos server"}},
                status=400,
            )
        messages = _to_messages(body.get("messages", []))
        question = next((str(m.content) for m in messages if isinstance(m, HumanMessage)), "")
        turn = sum(1 for m in messages if isinstance(m, AIMessage))
        key = f"{question}|{turn}"
        with self._lock:
            attempt = self._seen[key]
            self._seen[key] += 1
            self.stats.requests += 1
            self.stats.requests_by_question[question] += 1
            self.stats.models.append(str(body.get("model", "")))
        fault = self._draw(key, attempt)
        if fault is not None:
            with self._lock:
                self.stats.faults[fault] += 1
                self.stats.by_question.setdefault(question, []).append(fault)
        transport_fault = await self._transport_fault(request, fault)
        if transport_fault is not None:
            return transport_fault
        tools = [t.get("function", t).get("name", "?") for t in body.get("tools") or []]
        info = CallInfo(index=attempt, tools=tools, stop=body.get("stop"))
        reply = self.policy(messages, info)
        if isinstance(reply, BaseException):
            return web.json_response({"error": {"message": str(reply)}}, status=500)
        reply = AIMessage(content=reply) if isinstance(reply, str) else reply
        prompt = sum(approx_tokens(str(m.content)) for m in messages)
        model = str(body.get("model", "chaos"))
        completion = self._content_fault(model, reply, fault, tools, prompt)
        with self._lock:
            self.stats.prompt_tokens_by_question[question] += prompt
            self.stats.completion_tokens_by_question[question] += completion["usage"][
                "completion_tokens"
            ]
        return web.json_response(completion)

    async def _transport_fault(
        self, request: web.Request, fault: FaultKind | None
    ) -> web.StreamResponse | None:
        if fault == "rate_limit":
            wait = self.plan.retry_after_s
            return web.json_response(
                {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
                status=429,
                headers={"retry-after-ms": str(int(wait * 1000)), "retry-after": f"{wait:g}"},
            )
        if fault in ("server_error", "unavailable"):
            status = 500 if fault == "server_error" else 503
            return web.json_response({"error": {"message": f"chaos {fault}"}}, status=status)
        if fault == "reset":
            transport = request.transport
            sock = transport.get_extra_info("socket") if transport else None
            if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError
        if fault == "unauthorized":
            return web.json_response(
                {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
                status=401,
            )
        if fault == "context_too_long":
            return web.json_response(
                {
                    "error": {
                        "message": "This model's maximum context length is 128 tokens.",
                        "code": "context_length_exceeded",
                    }
                },
                status=400,
            )
        if fault == "hang":
            await asyncio.sleep(self.plan.hang_s)
            return web.json_response({"error": {"message": "too late"}}, status=504)
        return None

    def _content_fault(
        self,
        model: str,
        reply: AIMessage,
        fault: FaultKind | None,
        tools: list[str],
        prompt: int,
    ) -> dict[str, Any]:
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        calls = _wire_calls(reply)
        if fault == "empty":
            return _completion(model, "", [], "stop", prompt)
        if fault == "unknown_tool":
            bad = [
                {
                    "id": "call_unknown",
                    "type": "function",
                    "function": {"name": UNKNOWN_TOOL, "arguments": "{}"},
                }
            ]
            return _completion(model, None, bad, "tool_calls", prompt)
        if fault == "malformed_args":
            name = calls[0]["function"]["name"] if calls else (tools[0] if tools else "tool")
            broken = [
                {
                    "id": "call_malformed",
                    "type": "function",
                    "function": {"name": name, "arguments": '{"expression": "1 +'},
                }
            ]
            return _completion(model, None, broken, "tool_calls", prompt)
        if fault == "truncated":
            if calls:
                for c in calls:
                    args = c["function"]["arguments"]
                    c["function"]["arguments"] = args[: max(1, len(args) // 2)]
                return _completion(model, None, calls, "length", prompt)
            return _completion(model, text[: max(1, len(text) // 2)], [], "length", prompt)
        finish = "tool_calls" if calls else "stop"
        return _completion(model, text or None, calls, finish, prompt)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> ChaosServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # pragma: no cover - surfaced to start()
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="chaos-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"chaos server did not start: {failure[0] if failure else ''}")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self._stopped = asyncio.Event()
        ready.set()
        await self._stopped.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> ChaosServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def chaos_tool(
    tool: Tool,
    *,
    rate: float,
    seed: int = 0,
    kinds: Sequence[Literal["error", "latency", "hang"]] = ("error", "latency", "hang"),
    latency_s: float = 0.05,
    hang_s: float = 30.0,
    error: type[BaseException] = ToolTransientError,
    script: Sequence[Literal["error", "latency", "hang"] | None] = (),
) -> Tool:
    """`tool`, but a seeded share of its calls raise `error`, are slow, or hang.

    `script` gives the faults of the first calls exactly (`None`: a clean call); the seeded
    draw takes over after it. `error` is added to the tool's transient declarations, so the
    runtime treats it as retryable; a hang is what the tool timeout must catch.
    """
    calls = iter(range(1_000_000))
    scripted = deque(script)

    def draw() -> str | None:
        n = next(calls)
        if scripted:
            return scripted.popleft()
        digest = hashlib.sha256(f"{seed}|{tool.name}|{n}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= rate or not kinds:
            return None
        return kinds[int.from_bytes(digest[8:16], "big") % len(kinds)]

    async def wrapped(**kwargs: Any) -> Any:
        fault = draw()
        if fault == "error":
            raise error(f"chaos: {tool.name} backend briefly unavailable")
        if fault == "latency":
            await asyncio.sleep(latency_s)
        elif fault == "hang":
            await asyncio.sleep(hang_s)
        if tool.is_async:
            return await tool.func(**kwargs)
        return await asyncio.to_thread(tool.func, **kwargs)

    transient = tool.transient if error in tool.transient else (*tool.transient, error)
    return replace(tool, func=wrapped, transient=transient)
