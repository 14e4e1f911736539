"""`local:` chat models: `ChatOpenAI` pointed at the embedded server, plus small-model guards.

The agent talks to a local model exactly as to a hosted provider. Two things make tool calling
reliable with 0.5B/1.5B models, on top of the server's fixed chat template (`_template`):

- `parallel_tool_calls=False` by default: one call per turn is what these models manage.
- Salvage: the models sometimes answer with a bare `{"name": …, "arguments": …}` object
  instead of the fenced block the server parses (1 of 5 prompts on 0.5B). When the whole reply
  is such an object naming a bound tool, it is turned into a proper tool call.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolCall
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from keel.config import Settings
from keel.models.local._server import get_local_server

__all__ = ["LocalChatOpenAI", "local_chat_model", "salvage_tool_call"]

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
    """`ChatOpenAI` for the embedded server: one tool call per turn, bare-JSON salvage."""

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
        result = super()._generate(messages, stop, run_manager, **kwargs)
        return _salvage(result, kwargs.get("tools"))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        return _salvage(result, kwargs.get("tools"))


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
    server = await get_local_server(name, cache_dir=cache_dir, progress=progress)
    return LocalChatOpenAI(
        model=server.info.name,
        base_url=server.base_url,
        api_key=SecretStr(server.api_key),
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout=settings.limits.model_timeout_s,
        max_retries=0,
    )
