"""Small constructors for what nodes write into the state: trace steps and error records.

Both mask secrets (`keel.observability.redact`): an error's text often quotes a provider's
reply or a connection string, and what is written here reaches the checkpoints, the
`RunResult`, `keel run --json`, the logs and LangSmith.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import HumanMessage

from keel.errors import ErrorCode
from keel.observability.redact import redact
from keel.types import AgentState, ErrorKind, ErrorRecord, TraceStep, UsageTotals

NO_USAGE = UsageTotals(input_tokens=0, output_tokens=0, total_tokens=0, cost_usd=0.0, model_calls=0)


def error_record(
    state: AgentState,
    node: str,
    code: ErrorCode | str,
    kind: ErrorKind,
    message: str,
    *,
    attempt: int = 0,
) -> ErrorRecord:
    return ErrorRecord(
        node=node,
        code=str(code),
        kind=kind,
        message=redact(message[:4000])[:2000],
        iteration=state.get("iteration", 0),
        attempt=attempt,
    )


_FREE_TEXT = ("thought", "action_input", "observation")
"""Trace fields that carry text from the model, a tool or a provider."""


def trace_step(state: AgentState, node: str, ms: float, **fields: Any) -> TraceStep:
    """One row of the run's trace; `run_id` ties it to the run that wrote it."""
    step: dict[str, Any] = {
        "run_id": state.get("run_id"),
        "iteration": state.get("iteration", 0),
        "node": node,
        "thought": None,
        "action": None,
        "action_input": None,
        "observation": None,
        "ms": round(ms, 3),
        "tokens": 0,
        "cost": 0.0,
    }
    step.update(fields)
    for key in _FREE_TEXT:
        if step[key] is not None:
            step[key] = redact(step[key])
    return TraceStep(**step)  # type: ignore[typeddict-item]


_LAST_VALUE = frozenset(
    {
        "answer",
        "iteration",
        "iteration_deadline",
        "model_attempt",
        "rejected_output",
        "repair_attempt",
        "repair_hint",
        "retry_delay_s",
        "signal",
        "tier",
        "tool_attempt",
        "tool_retry",
    }
)
"""Plain last-value keys a node step writes: writing the value a key already holds
changes nothing."""
_APPENDED = frozenset({"errors", "messages", "trace"})
"""List keys whose writes are appended: writing an empty list changes nothing."""


def changes(state: Mapping[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` without the writes that would leave the state as it is.

    Every write costs a step of LangGraph's: the channel's update and new version, the
    pending write saved (with `durability="sync"`, a serialized row per write) and the
    channel's value stored again in the step's checkpoint. A reason step of the usual path
    wrote eleven keys of which six kept their value; readers see the same state either way
    (a key the state does not hold yet is always written)."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key in _LAST_VALUE and key in state and state[key] == value:
            continue
        if key in _APPENDED and isinstance(value, list) and not value:
            continue
        out[key] = value
    return out


def text_of(content: Any) -> str:
    """The text of a message content (plain string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text", "") for p in content]
        return "".join(str(p) for p in parts)
    return str(content)


def question_start(messages: list[Any], question: str) -> int:
    """Index of the last human message asking `question` (0 when none): where its turn starts."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, HumanMessage) and text_of(message.content) == question:
            return index
    return 0
