"""The reply plumbing the scripted policies share: reading the conversation and answering
in either protocol (native tool calls when tools are bound, ReAct text otherwise)."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from keel.testing.scripted import CallInfo

__all__ = ["call", "final", "observations", "question"]


def question(messages: list[BaseMessage]) -> str:
    """The first human turn: what the run was asked."""
    return next((str(m.content) for m in messages if isinstance(m, HumanMessage)), "")


def observations(messages: list[BaseMessage]) -> list[str]:
    """Tool results so far, in either protocol (tool messages or `Observation:` turns)."""
    found = []
    for m in messages:
        if isinstance(m, ToolMessage):
            found.append(str(m.content))
        elif isinstance(m, HumanMessage) and str(m.content).startswith("Observation: "):
            found.append(str(m.content).removeprefix("Observation: "))
    return found


def call(
    info: CallInfo, tool: str, args: dict[str, Any], thought: str, *, call_id: str | None = None
) -> AIMessage:
    """A call of `tool` (id `call_id`, by default `call_<tool>_<index>`)."""
    if info.tools:
        an_id = call_id or f"call_{tool}_{info.index}"
        return AIMessage(content="", tool_calls=[{"name": tool, "args": args, "id": an_id}])
    return AIMessage(
        content=f"Thought: {thought}\nAction: {tool}\nAction Input: {json.dumps(args)}"
    )


def final(info: CallInfo, answer: str) -> AIMessage:
    """The final answer."""
    return AIMessage(
        content=answer if info.tools else f"Thought: I know the answer.\nFinal Answer: {answer}"
    )
