"""Token accounting: usage of one call from `usage_metadata`, and estimates before a call.

Providers report usage on the reply (`AIMessage.usage_metadata`); when a reply is streamed,
LangChain adds up the chunks' metadata, so an aggregated stream is accounted like a plain
reply (`usage_of_chunks`). Prompt tokens served from the provider's prompt cache
(`input_token_details.cache_read`) are priced at the cached rate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage

from keel.config import ModelPrice
from keel.types import UsageTotals

__all__ = [
    "CHARS_PER_TOKEN",
    "CallEstimate",
    "CallUsage",
    "estimate_call",
    "estimate_tokens",
    "usage_of_chunks",
]

CHARS_PER_TOKEN = 4
"""Provider-independent estimate; errs high for English prose with OpenAI tokenizers."""
MESSAGE_OVERHEAD = 4
"""Tokens a chat format adds per message (role, separators)."""


@dataclass(frozen=True)
class CallUsage:
    """Tokens of one model call as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any] | None) -> CallUsage:
        if not meta:
            return cls()
        details = meta.get("input_token_details") or {}
        return cls(
            input_tokens=int(meta.get("input_tokens", 0) or 0),
            output_tokens=int(meta.get("output_tokens", 0) or 0),
            cached_tokens=int(details.get("cache_read", 0) or 0),
        )

    @classmethod
    def from_message(cls, message: AIMessage) -> CallUsage:
        return cls.from_metadata(message.usage_metadata)

    def cost_usd(self, price: ModelPrice) -> float:
        """USD at `price` (cached prompt tokens at the cached rate, else the input rate)."""
        cached_rate = price.input if price.cached_input is None else price.cached_input
        fresh = max(self.input_tokens - self.cached_tokens, 0)
        dollars = (
            fresh * price.input
            + self.cached_tokens * cached_rate
            + self.output_tokens * price.output
        )
        return round(dollars / 1_000_000, 10)

    def totals(self, price: ModelPrice, *, calls: int = 1) -> UsageTotals:
        """This call as a state usage increment."""
        return UsageTotals(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.total_tokens,
            cost_usd=self.cost_usd(price),
            model_calls=calls,
            cached_tokens=self.cached_tokens,
        )


def usage_of_chunks(chunks: Iterable[AIMessageChunk]) -> CallUsage:
    """Usage of a streamed reply: the chunks merged the way LangChain merges them."""
    merged: AIMessageChunk | None = None
    for chunk in chunks:
        merged = chunk if merged is None else merged + chunk
    return CallUsage() if merged is None else CallUsage.from_message(merged)


def _text(message: BaseMessage) -> str:
    content = message.content
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    calls = getattr(message, "tool_calls", None)
    return text + (json.dumps(calls, default=str) if calls else "")


def estimate_tokens(messages: Sequence[BaseMessage], tools: Sequence[Any] = ()) -> int:
    """Approximate prompt tokens of `messages` (plus bound tool schemas), no tokenizer needed."""
    chars = sum(len(_text(m)) for m in messages)
    chars += sum(len(json.dumps(t, default=str)) for t in tools)
    return -(-chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(messages)


@dataclass(frozen=True)
class CallEstimate:
    """The worst case of a call about to be made: full prompt plus `max_tokens` of reply."""

    prompt_tokens: int
    max_output_tokens: int
    usd: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_output_tokens


def estimate_call(prompt_tokens: int, max_output_tokens: int, price: ModelPrice) -> CallEstimate:
    """Cost of a call if the reply used all of `max_output_tokens` (no prompt-cache discount)."""
    usd = (prompt_tokens * price.input + max_output_tokens * price.output) / 1_000_000
    return CallEstimate(prompt_tokens, max_output_tokens, round(usd, 10))
