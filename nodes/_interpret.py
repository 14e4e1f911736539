"""Turning a model reply into a decision: tool calls or a final answer — or a rejection.

Both reasoning modes end in the same shape: an `AIMessage` whose `tool_calls` the `act`
node runs, or a final answer. A reply that fits neither raises `MalformedOutputError`
with a hint for the model; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, ToolCall
from langchain_core.messages.tool import tool_call

from keel.errors import ErrorCode, MalformedOutputError
from keel.nodes._records import text_of
from keel.nodes.context import ReasoningMode
from keel.nodes.react_protocol import ReactAction, format_react_step, parse_react


@dataclass(frozen=True)
class Decision:
    message: AIMessage
    """What goes into the history (tool calls carry stable ids)."""
    thought: str | None
    answer: str | None = None
    calls: list[ToolCall] = field(default_factory=list)


def call_id(iteration: int, index: int, given: str | None) -> str:
    """The provider's id when it gave one, else a deterministic one (replays identically)."""
    return given or f"call_{iteration}_{index}"


def interpret(reply: AIMessage, mode: ReasoningMode, iteration: int) -> Decision:
    if reply.response_metadata.get("finish_reason") == "length":
        raise MalformedOutputError(
            "your reply was cut off at the token limit. Reply again, shorter.",
            code=ErrorCode.OUTPUT_TRUNCATED,
        )
    if mode == "react":
        return _interpret_react(reply, iteration)
    return _interpret_native(reply, iteration)


def _interpret_native(reply: AIMessage, iteration: int) -> Decision:
    text = text_of(reply.content).strip()
    if reply.invalid_tool_calls:
        bad = reply.invalid_tool_calls[0]
        raise MalformedOutputError(
            f"the arguments of your call to tool '{bad.get('name')}' are not valid JSON "
            f"({bad.get('error') or 'unparseable'}): {bad.get('args')!r}. "
            "Send the arguments as one JSON object."
        )
    if reply.tool_calls:
        given = reply.tool_calls
        if all(c.get("id") and c.get("type") == "tool_call" for c in given):
            # the provider named every call: the reply is the message, not a copy of it
            # (one message object fewer per call for each run's whole life, issue 19)
            return Decision(message=reply, thought=text or None, calls=given)
        calls = [
            tool_call(name=c["name"], args=c["args"], id=call_id(iteration, i, c.get("id")))
            for i, c in enumerate(given)
        ]
        message = reply.model_copy(update={"tool_calls": calls})
        return Decision(message=message, thought=text or None, calls=calls)
    if not text:
        raise MalformedOutputError(
            "the reply was empty. Call a tool, or answer the question in plain text."
        )
    return Decision(message=reply, thought=None, answer=text)


def _interpret_react(reply: AIMessage, iteration: int) -> Decision:
    step = parse_react(text_of(reply.content))
    text = format_react_step(step)  # canonical: drops anything the model made up after it
    if isinstance(step, ReactAction):
        args: dict[str, Any] = step.tool_input
        call = tool_call(name=step.tool, args=args, id=call_id(iteration, 0, None))
        message = AIMessage(
            content=text,
            tool_calls=[call],
            id=reply.id,
            usage_metadata=reply.usage_metadata,
            response_metadata=reply.response_metadata,
        )
        return Decision(message=message, thought=step.thought, calls=[call])
    message = AIMessage(
        content=text,
        id=reply.id,
        usage_metadata=reply.usage_metadata,
        response_metadata=reply.response_metadata,
    )
    return Decision(message=message, thought=step.thought, answer=step.answer)
