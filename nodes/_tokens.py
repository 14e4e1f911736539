"""The prompt's token estimate, with each message counted once rather than on every look.

Before each model call the cost gate and compaction estimate the prompt several times (is
compaction needed, does the call fit the budget, the gate's own check), and the history
only grows between calls. `estimate_tokens(messages, tool_chars)` gives the same number as
`keel.cost.accounting.estimate_tokens` but remembers each message's size for as long as the
message lives (by identity, checked against its content and tool calls, so a message whose
content was replaced is measured again), and takes the tools' size precomputed
(`ToolRegistry.schema_chars`).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from keel.cost.accounting import CHARS_PER_TOKEN, MESSAGE_OVERHEAD

__all__ = ["estimate_tokens", "message_chars"]

_Stamp = tuple[int, int, int, int]


class _Size(weakref.ref[BaseMessage]):
    """A message's remembered size: a weak reference to the message that carries its
    stamp and size, and removes its own entry when the message dies. One object per
    message, where a reference, a closure for its callback and a tuple would be four: with
    a thousand runs alive, every object a run holds lengthens each full collection."""

    __slots__ = ("chars", "key", "stamp")
    key: int
    stamp: _Stamp
    chars: int

    def __new__(cls, message: BaseMessage, key: int, stamp: _Stamp, chars: int) -> _Size:
        return super().__new__(cls, message, _forget)

    def __init__(self, message: BaseMessage, key: int, stamp: _Stamp, chars: int) -> None:
        self.key, self.stamp, self.chars = key, stamp, chars


def _forget(ref: weakref.ref[Any]) -> None:
    if isinstance(ref, _Size) and _SIZES.get(ref.key) is ref:
        del _SIZES[ref.key]


_SIZES: dict[int, _Size] = {}


def _tool_calls(message: BaseMessage) -> Any:
    """The message's `tool_calls` field, if it has one. Not `getattr(message, "tool_calls",
    None)`: on a message without the field that goes through pydantic's `__getattr__`,
    which builds and raises an `AttributeError` (about 1 % of a run's CPU, issue 19)."""
    return message.__dict__.get("tool_calls")


def _stamp(message: BaseMessage) -> _Stamp:
    content = message.content
    calls = _tool_calls(message)
    return (id(content), len(content), id(calls), len(calls) if calls else 0)


def _measure(message: BaseMessage) -> int:
    """`len(accounting._text(message))`: the content, then the tool calls, as JSON."""
    content = message.content
    chars = len(content) if isinstance(content, str) else len(json.dumps(content, default=str))
    calls = _tool_calls(message)
    return chars + (len(json.dumps(calls, default=str)) if calls else 0)


def message_chars(message: BaseMessage) -> int:
    """The characters `message` adds to a prompt estimate (remembered while it lives)."""
    content = message.content
    if isinstance(content, str) and not _tool_calls(message):
        return len(content)  # cheaper than remembering
    key = id(message)
    stamp = _stamp(message)
    known = _SIZES.get(key)
    if known is not None and known() is message and known.stamp == stamp:
        return known.chars
    chars = _measure(message)
    _SIZES[key] = _Size(message, key, stamp, chars)
    return chars


def estimate_tokens(messages: Sequence[BaseMessage], tool_chars: int = 0) -> int:
    """Approximate prompt tokens of `messages` plus tool schemas of `tool_chars` characters."""
    chars = tool_chars
    sizes = _SIZES
    for m in messages:  # inlined fast paths: plain text, then a size already remembered
        content = m.content
        calls = m.__dict__.get("tool_calls")  # as `_tool_calls`
        if content.__class__ is str:
            if not calls:
                chars += len(content)
                continue
            known = sizes.get(id(m))
            if (
                known is not None
                and known() is m
                and known.stamp == (id(content), len(content), id(calls), len(calls))
            ):  # `_stamp(m)`, with `calls` not empty
                chars += known.chars
                continue
        chars += message_chars(m)
    return -(-chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(messages)
