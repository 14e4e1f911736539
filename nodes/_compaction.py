"""Context compaction: keep the prompt under a token threshold without losing the thread.

Always: a tool output longer than `tool_output_chars` is cut, with a marker saying how much
was dropped. Above `max_prompt_tokens` (estimated): tool outputs older than the last
`keep_last` messages are trimmed; if that is not enough, the middle of the history (between
the question and the kept tail) is replaced by a summary. The summary is written by the
cheapest tier (`summarize_middle`, called through the model gate before `reason`'s call and
kept in the state as `context_summary`), or, without one, an extractive digest. The system
prompt, the question and the last turns are never touched, and a kept tail never starts
with an orphaned tool result (its assistant call is kept with it).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from keel.config import CompactionSettings
from keel.nodes._records import text_of
from keel.nodes._tokens import estimate_tokens

__all__ = [
    "Compacted",
    "compact_history",
    "cut",
    "keep_recent",
    "summarize_middle",
    "summary_needed",
    "system_tokens",
]

SUMMARY_PREFIX = "Summary of the earlier steps of this task:\n"
SUMMARY_MAX_CHARS = 2400
"""A stored summary's ceiling (the instructions ask for 200 words, ~1,300 characters): the
summary is rewritten as the history grows, and must not grow with it."""
SUMMARY_INSTRUCTIONS = (
    "Summarize these earlier steps of an agent's work for the agent itself. Keep every "
    "number, name, table and tool result it may need; drop chatter. At most 200 words."
)


def system_tokens(system_prompt: str) -> int:
    """Tokens to set aside for the system prompt and tool instructions."""
    return len(system_prompt) // 4 + 200


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n…[cut: {len(text) - limit} of {len(text)} characters dropped]"


def _with_content(message: BaseMessage, content: str) -> BaseMessage:
    return message.model_copy(update={"content": content})


def _cut_tools(messages: list[BaseMessage], limit: int) -> list[BaseMessage]:
    return [
        _with_content(m, cut(text_of(m.content), limit))
        if isinstance(m, ToolMessage) and len(text_of(m.content)) > limit
        else m
        for m in messages
    ]


def _tail_start(messages: list[BaseMessage], keep_last: int) -> int:
    """Where the verbatim tail starts: never on a tool result cut off from its call."""
    start = max(len(messages) - keep_last, 1)
    while start > 1 and isinstance(messages[start], ToolMessage):
        start -= 1
    return start


def _digest(messages: list[BaseMessage]) -> str:
    lines = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            calls = "; ".join(f"{c['name']}({json.dumps(c['args'])[:160]})" for c in m.tool_calls)
            lines.append(f"- called {calls}")
        elif isinstance(m, ToolMessage):
            lines.append(f"- {m.name or 'tool'} returned: {text_of(m.content)[:200]}")
        elif text_of(m.content).strip():
            lines.append(f"- {m.type}: {text_of(m.content)[:200]}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Compacted:
    messages: list[BaseMessage]
    middle: tuple[int, int] | None = None
    """The summarized range [start, end) of the original history, if any."""


def compact_history(
    history: list[BaseMessage],
    settings: CompactionSettings,
    *,
    system_tokens: int = 0,
    summary: str | None = None,
    summary_upto: int = 0,
) -> Compacted:
    """The history as the model should see it (the state's history is never changed)."""
    messages = _cut_tools(history, settings.tool_output_chars)
    budget = settings.max_prompt_tokens - system_tokens
    if estimate_tokens(messages) <= budget or len(messages) <= settings.keep_last + 1:
        return Compacted(messages)
    start = _tail_start(messages, settings.keep_last)
    trimmed = [
        *messages[:1],
        *_cut_tools(messages[1:start], settings.old_tool_output_chars),
        *messages[start:],
    ]
    if estimate_tokens(trimmed) <= budget:
        return Compacted(trimmed)
    end = start
    if summary and 1 < summary_upto <= start:
        end = summary_upto
        text = summary
        rest = trimmed[summary_upto:]
    else:
        text = _digest(messages[1:start])
        rest = trimmed[start:]
    note = HumanMessage(SUMMARY_PREFIX + text)
    return Compacted([messages[0], note, *rest], middle=(1, end))


def summary_needed(
    history: list[BaseMessage],
    settings: CompactionSettings,
    *,
    system_tokens: int = 0,
    summary: str | None = None,
    summary_upto: int = 0,
) -> tuple[int, int] | None:
    """The middle range to summarize now, or None when the current summary (if any) suffices."""
    if not settings.summarize:
        return None
    plain = compact_history(history, settings, system_tokens=system_tokens)
    if plain.middle is None:
        return None
    current = compact_history(
        history,
        settings,
        system_tokens=system_tokens,
        summary=summary,
        summary_upto=summary_upto,
    )
    over = estimate_tokens(current.messages) > settings.max_prompt_tokens - system_tokens
    if summary and current.middle is not None and current.middle[1] == summary_upto and not over:
        return None
    return plain.middle


def keep_recent(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """`text` cut to its last `limit` characters (whole lines where possible), with a
    marker saying how much of the start was dropped."""
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    newline = tail.find("\n")
    if 0 <= newline < limit // 2:
        tail = tail[newline + 1 :]
    return f"…[earlier steps cut: {len(text) - len(tail)} characters dropped]\n{tail}"


async def summarize_middle(
    invoke: Callable[[list[BaseMessage]], Awaitable[BaseMessage]],
    history: list[BaseMessage],
    span: tuple[int, int],
    previous: str | None = None,
    previous_upto: int = 0,
) -> str:
    """A summary of `history[span]`, written by `invoke` (the cheapest tier, through the
    model gate: budget, breaker, timeout and accounting apply as to any call).

    With a `previous` summary of the history up to `previous_upto`, only the steps after
    it are digested beside it. The result is bounded by `SUMMARY_MAX_CHARS` (and a marker),
    also when the model returns nothing and the earlier summary plus the digest stand in
    (they grew by every turn's steps while the model kept returning nothing).
    """
    start, end = span
    if previous and start < previous_upto <= end:
        start = previous_upto
    digest = _digest(history[start:end])
    if previous:
        digest = f"Earlier summary:\n{previous}\n\nSteps:\n{digest}"
    question = text_of(history[0].content) if history else ""
    reply = await invoke(
        [
            SystemMessage(SUMMARY_INSTRUCTIONS),
            HumanMessage(f"Task: {question}\n\n{digest}"),
        ]
    )
    text = text_of(reply.content).strip()
    return cut(text, SUMMARY_MAX_CHARS) if text else keep_recent(digest)
