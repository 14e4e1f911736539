"""`local:` chat models: `ChatOpenAI` pointed at the embedded server, plus small-model guards.

The agent talks to a local model exactly as to a hosted provider. Two things make tool calling
reliable with 0.5B/1.5B models, on top of the server's fixed chat template (`_template`):

- `parallel_tool_calls=False` by default: one call per turn is what these models manage.
- Salvage: the models sometimes answer with a bare `{"name": …, "arguments": …}` object
  instead of the fenced block the server parses (1 of 5 prompts on 0.5B). When the whole reply
  is such an object naming a bound tool, it is turned into a proper tool call.

Calls stream and are timed by progress, not by a total (`_progress`): a call on a busy
machine is slow but keeps producing prompt batches and tokens; a stuck server produces
nothing and fails after `KEEL_LOCAL__STALL_TIMEOUT_S`. The streamed chunks are joined into
one reply, with the token usage of the stream's last chunk, so budgets see the same numbers.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, BaseMessage, ToolCall
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI
from pydantic import Field, SecretStr

from keel.config import Settings
from keel.models.local._progress import Activity, watch_progress
from keel.models.local._server import ServerOptions, get_local_server

__all__ = ["LocalChatOpenAI", "local_chat_model", "salvage_tool_call", "server_chat_model"]

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _bound_tool_names(tools: Any) -> set[str]:
    names = set()
    for tool in tools or ():
        if isinstance(tool, dict):
            function = tool.get("function", tool)
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.add(function["name"])
    return names


def salvage_tool_call(message: AIMessage, tool_names: set[str]) -> AIMessage:
    """Turn a reply that is only a `{"name", "arguments"}` object into a tool call.

    Anything else (prose, unknown tool, extra keys, existing tool calls) is returned as is,
    so the graph's malformed-output repair still sees genuinely malformed replies.
    """
    if message.tool_calls or not tool_names or not isinstance(message.content, str):
        return message
    text = message.content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        payload = json.loads(text)
    except ValueError:
        return message
    if not isinstance(payload, dict) or set(payload) != {"name", "arguments"}:
        return message
    name, args = payload["name"], payload["arguments"]
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return message
    if name not in tool_names or not isinstance(args, dict):
        return message
    call = ToolCall(name=name, args=args, id=f"call_{uuid.uuid4().hex[:24]}", type="tool_call")
    return message.model_copy(update={"content": "", "tool_calls": [call]})


def _salvage(result: ChatResult, tools: Any) -> ChatResult:
    names = _bound_tool_names(tools)
    for generation in result.generations:
        if isinstance(generation.message, AIMessage):
            generation.message = salvage_tool_call(generation.message, names)
    return result


class LocalChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` for the embedded server: one tool call per turn, bare-JSON salvage, and
    streamed calls that fail on a stall, not after a fixed time."""

    stall_timeout_s: float = 60.0
    """A call fails when the server showed no progress for this long (see `_progress`)."""
    activity: Activity = Field(default_factory=Activity, exclude=True)
    """Progress of every call to the same server (shared: queued calls wait on it)."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = False,
        response_format: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return super().bind_tools(
            tools,
            tool_choice=tool_choice,
            strict=strict,
            parallel_tool_calls=parallel_tool_calls,
            response_format=response_format,
            **kwargs,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Sync calls stream too; the socket's read timeout is their only stall guard."""
        kwargs.setdefault("timeout", self.stall_timeout_s)
        result = generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        return _salvage(result, kwargs.get("tools"))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        return _salvage(result, kwargs.get("tools"))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        return super()._stream(messages, stop, run_manager, **_streamed(kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunks = super()._astream(messages, stop, run_manager, **_streamed(kwargs))
        what = f"local:{self.model_name}"
        async for chunk in watch_progress(chunks, self.activity, self.stall_timeout_s, what):
            yield chunk


def _streamed(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Ask for the token usage in the last chunk and a chunk after every prompt batch."""
    extra = {**(kwargs.get("extra_body") or {}), "return_progress": True}
    return {**kwargs, "stream_usage": True, "extra_body": extra}


async def local_chat_model(
    name: str,
    settings: Settings,
    *,
    progress: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> BaseChatModel:
    """A chat model backed by the process-wide local server for `name` (`local:` optional).

    The first call verifies (or assembles) the weights and starts the server, reporting
    through `progress`; later calls reuse it. Retries are left to the agent graph.
    """
    local = settings.local
    options = ServerOptions(batch_tokens=local.batch_tokens)
    if local.threads is not None:
        options = ServerOptions(n_threads=local.threads, batch_tokens=local.batch_tokens)
    server = await get_local_server(name, cache_dir=cache_dir, progress=progress, options=options)
    return server_chat_model(
        server.base_url, server.api_key, server.info.name, settings, server.activity
    )


def server_chat_model(
    base_url: str, api_key: str, model: str, settings: Settings, activity: Activity
) -> LocalChatOpenAI:
    """The chat model for a running server at `base_url` (`/v1`): what `local_chat_model`
    returns, for a server started some other way."""
    return LocalChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=SecretStr(api_key),
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout=None,  # the stall guard times calls (a busy server is slow, not stuck)
        stream_chunk_timeout=None,
        max_retries=0,
        stall_timeout_s=settings.local.stall_timeout_s,
        activity=activity,
    )
