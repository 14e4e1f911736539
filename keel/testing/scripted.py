"""Deterministic chat models for tests: a reply is a function of the conversation.

`FunctionModel(fn)` calls `fn(messages, info)` for every model call; `fn` returns the next
`AIMessage` (tool calls included), a plain string (a final answer), or raises to simulate a
provider failure. `ScriptedModel([...])` plays a fixed list of replies/exceptions in order.
Both report `usage_metadata` (approximate token counts, ~4 characters a token) unless the
reply carries its own, so accounting works exactly as with a real provider.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, PrivateAttr

__all__ = ["CallInfo", "FunctionModel", "Reply", "ScriptedModel", "approx_tokens"]

Reply = AIMessage | str | BaseException


def approx_tokens(text: str) -> int:
    """A provider-independent token estimate (~4 characters a token, at least 1)."""
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class CallInfo:
    """What the scripted function learns about the call besides the messages."""

    index: int
    """0-based number of this call on this model instance."""
    tools: list[str] = field(default_factory=list)
    """Names of the tools bound for this call (empty: no native tool calling)."""
    stop: list[str] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def _message_text(message: BaseMessage) -> str:
    text = message.content if isinstance(message.content, str) else json.dumps(message.content)
    calls = getattr(message, "tool_calls", None)
    return text + (json.dumps(calls, default=str) if calls else "")


def _tool_names(tools: Sequence[Any]) -> list[str]:
    names = []
    for t in tools:
        if isinstance(t, dict):
            names.append(t.get("function", t).get("name", "?"))
        else:
            names.append(getattr(t, "name", getattr(t, "__name__", "?")))
    return names


class FunctionModel(BaseChatModel):
    """A chat model whose every reply is computed by a Python function."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    fn: Callable[[list[BaseMessage], CallInfo], Reply]
    model_name: str = "scripted"
    supports_tool_calling: bool = True
    """False makes `bind_tools` raise, as for a model with no native tool calling."""
    latency_s: float = 0.0
    """Seconds each async call waits before replying (a provider's latency, for benchmarks)."""
    _calls: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "keel-function-model"

    @property
    def calls(self) -> int:
        """How many times the model was called."""
        return self._calls

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        if not self.supports_tool_calling:
            raise NotImplementedError(f"{self.model_name} has no native tool calling")
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)

    def _reply(self, messages: list[BaseMessage], stop: list[str] | None, **kw: Any) -> ChatResult:
        info = CallInfo(
            index=self._calls,
            tools=_tool_names(kw.pop("tools", None) or []),
            stop=stop,
            kwargs=kw,
        )
        self._calls += 1
        reply = self.fn(messages, info)
        if isinstance(reply, BaseException):
            raise reply
        message = AIMessage(content=reply) if isinstance(reply, str) else reply
        if message.usage_metadata is None:
            prompt = sum(approx_tokens(_message_text(m)) for m in messages)
            completion = approx_tokens(_message_text(message))
            message = message.model_copy(
                update={
                    "usage_metadata": {
                        "input_tokens": prompt,
                        "output_tokens": completion,
                        "total_tokens": prompt + completion,
                    }
                }
            )
        if not message.response_metadata.get("model_name"):
            message = message.model_copy(
                update={
                    "response_metadata": {
                        **message.response_metadata,
                        "model_name": self.model_name,
                    }
                }
            )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply(messages, stop, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self._reply(messages, stop, **kwargs)


def ScriptedModel(
    replies: Sequence[Reply], *, model_name: str = "scripted", supports_tool_calling: bool = True
) -> FunctionModel:
    """A `FunctionModel` that plays `replies` in order (and fails loudly past the end)."""
    script = list(replies)

    def play(_: list[BaseMessage], info: CallInfo) -> Reply:
        if info.index >= len(script):
            raise AssertionError(
                f"scripted model called {info.index + 1} times; script has {len(script)} replies"
            )
        return script[info.index]

    return FunctionModel(
        fn=play, model_name=model_name, supports_tool_calling=supports_tool_calling
    )
