"""A loop that cannot get anywhere: the model repeats a tool call that already failed.

A small model at temperature 0 that wrote a refused query often writes it again, word for
word, after the refusal, and then again until the iteration limit (a 0.5B model spent 350 s
on one question that way). A call whose name and arguments equal one that already failed
twice in the same question, for a reason the model was meant to fix (an unknown tool,
invalid arguments, a refused query, an error the tool reported), will fail the same way:
when every call of a step is such a repeat and fails again, `act` stops the loop
(`iteration_limit`, saying why) and the run degrades at once instead of at the limit. Twice,
not once: a model whose prompt changed in between (the planned flow handing over to the
free tool loop) gets one more try. A transient failure (a
timeout, a backend that was down) is not counted: the same call may well succeed later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolCall, ToolMessage

from keel.errors import ErrorCode
from keel.nodes._records import question_start
from keel.types import AgentState

__all__ = ["REPEATABLE_FAILURES", "STUCK_AFTER", "repeats_failed_calls"]

REPEATABLE_FAILURES = frozenset(
    {
        str(ErrorCode.UNKNOWN_TOOL),
        str(ErrorCode.INVALID_TOOL_ARGS),
        str(ErrorCode.TOOL_REFUSED),
        str(ErrorCode.TOOL_ERROR),
    }
)
"""Failures the same call meets again: its input, not the moment, is what failed."""
STUCK_AFTER = 2
"""Failures of the same call before one more failure of it stops the loop."""


def repeats_failed_calls(
    state: AgentState, calls: Sequence[ToolCall], codes: Sequence[str | None]
) -> str | None:
    """The repeated call (`name(args)`) when every one of `calls` failed (`codes`: each call's
    error code, None if it succeeded) for a repeatable reason and repeats, name and arguments,
    a call that already failed `STUCK_AFTER` times in this question; None otherwise."""
    if not calls or any(code not in REPEATABLE_FAILURES for code in codes):
        return None
    failed = _failed_before(state)
    keys = [_key(call["name"], call["args"]) for call in calls]
    if not all(failed.get(key, 0) >= STUCK_AFTER for key in keys):
        return None
    first = calls[0]
    return f"{first['name']}({_args_text(first['args'])})"


def _failed_before(state: AgentState) -> dict[str, int]:
    """How often each call (its name and args key) failed earlier in the current question."""
    messages = list(state.get("messages", []))
    start = question_start(messages, state.get("question", ""))
    asked: dict[str, str] = {}
    failed: dict[str, int] = {}
    for message in messages[start:]:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                asked[call.get("id") or ""] = _key(call["name"], call["args"])
        elif isinstance(message, ToolMessage) and message.status == "error":
            key = asked.get(message.tool_call_id)
            if key is not None:
                failed[key] = failed.get(key, 0) + 1
    return failed


def _key(name: str, args: dict[str, Any]) -> str:
    return f"{name}\x00{_args_text(args)}"


def _args_text(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={args[k]!r}" for k in sorted(args))
