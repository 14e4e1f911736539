"""Glue between the nodes and `keel.resilience`: guarded tool calls and the retry wait.

Model calls are guarded by `nodes._model_gate`, which also checks budgets and accounts.

Kept apart from `reason` and `act` so those nodes only gain one-line hooks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolCall, ToolMessage
from pydantic import BaseModel

from keel.errors import ErrorCode
from keel.nodes._records import trace_step
from keel.nodes.context import AgentContext
from keel.resilience import backoff_delay, retry_delay
from keel.tools.registry import Tool, ToolContext
from keel.types import AgentState, ErrorRecord

__all__ = [
    "RetryPlan",
    "calls_to_run",
    "observe_tool_retry",
    "plan_retry",
    "retry_wait",
    "run_tool_guarded",
    "tool_retry_update",
]

_RETRIED_CODES = {str(ErrorCode.TOOL_FAILED), str(ErrorCode.TOOL_TIMEOUT)}


@dataclass(frozen=True)
class RetryPlan:
    """What follows a failed attempt of a model or tool call: another try after `delay_s`,
    or none, and then `stop` says why."""

    attempt: int
    """The number of the attempt that failed (1-based): the retry's backoff step."""
    delay_s: float
    stop: Literal["not_retryable", "exhausted", "deadline"] | None = None

    @property
    def retry(self) -> bool:
        return self.stop is None


def plan_retry(
    ctx: AgentContext,
    *,
    attempt: int,
    limit: int,
    retryable: bool,
    deadline: float,
    retry_after: float | None = None,
) -> RetryPlan:
    """The one retry rule of model and tool calls: a retryable failure is tried again while
    attempts remain (`attempt < limit`) and the wait ends before `deadline`.

    The wait is chosen now, when the failure is recorded (so it is in the checkpoint and
    the trace): full-jitter backoff, stretched to any `Retry-After`.
    """
    delay = retry_delay(attempt, ctx.settings.retry, ctx.rng, retry_after)
    if not retryable:
        return RetryPlan(attempt, delay, "not_retryable")
    if attempt >= limit:
        return RetryPlan(attempt, delay, "exhausted")
    if ctx.clock() + delay >= deadline:
        return RetryPlan(attempt, delay, "deadline")
    return RetryPlan(attempt, delay)


def retry_wait(state: AgentState, ctx: AgentContext, attempt: int) -> float:
    """Seconds to sleep before retry `attempt`: the recorded delay, else a fresh backoff."""
    recorded = state.get("retry_delay_s")
    if recorded is not None:
        return float(recorded)
    return backoff_delay(attempt, ctx.settings.retry, ctx.rng)


async def run_tool_guarded(
    ctx: AgentContext, tool: Tool, arguments: BaseModel, tool_ctx: ToolContext, limit_s: float
) -> str:
    """One tool call under its breaker and its timeout (async: cancelled; sync: the worker
    thread is abandoned; `isolation="process"`: the child process is killed)."""
    # the breaker's own context, not a wrapper of it: one generator, its
    # frame and its context manager fewer alive per waiting call (issue 19)
    guard = ctx.resilience.tool_call(tool.name, clock=ctx.clock, transient=tool.transient)
    async with guard, asyncio.timeout(limit_s):
        return await tool.invoke(arguments, tool_ctx)


async def calls_to_run(state: AgentState, ctx: AgentContext) -> list[ToolCall]:
    """The tool calls `act` runs: the last reply's, or on a tool retry only the failed ones
    (after the backoff chosen when they failed)."""
    messages = state.get("messages", [])
    retry = state.get("tool_retry") or {}
    if retry:
        await ctx.sleep(float(state.get("retry_delay_s") or 0.0))
    else:
        last = messages[-1] if messages else None
        return list(last.tool_calls) if isinstance(last, AIMessage) else []
    reply = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    return [c for c in (reply.tool_calls if reply else []) if c["id"] in retry]


def tool_retry_update(
    state: AgentState,
    ctx: AgentContext,
    calls: Sequence[ToolCall],
    outcomes: Sequence[tuple[ToolMessage, ErrorRecord | None, Any]],
) -> dict[str, Any]:
    """After `act`: give each result a stable id, and schedule a retry of the idempotent
    calls that failed transiently while attempts remain (`signal=retry`, counted in the
    state). Non-idempotent calls are never re-run here: the model sees the error."""
    retry = state.get("tool_retry") or {}
    attempt = state.get("tool_attempt", 0)
    again: dict[str, str] = {}
    for call, (message, record, _) in zip(calls, outcomes, strict=True):
        call_id = call["id"] or ""
        message.id = retry.get(call_id) or (
            f"{state.get('run_id')}:{state.get('iteration', 0)}:{call_id}"
        )
        tool = ctx.tools.get(call["name"])
        if (
            record is not None
            and record["kind"] == "retryable"
            and record["code"] in _RETRIED_CODES
            and tool is not None
            and tool.idempotent
        ):
            again[call_id] = message.id
    if again:
        plan = plan_retry(
            ctx,
            attempt=attempt + 1,
            limit=state["limits"].get("max_tool_attempts", 3),
            retryable=True,
            deadline=state["deadline"],
        )
        if plan.retry:
            return {
                "signal": "retry",
                "tool_retry": again,
                "tool_attempt": plan.attempt,
                "retry_delay_s": plan.delay_s,
            }
    return {"tool_retry": None, "tool_attempt": 0}


def observe_tool_retry(state: AgentState, ctx: AgentContext, ms: float) -> dict[str, Any] | None:
    """`observe`'s hook: pass a scheduled tool retry on to `act` (the cycle is not over)."""
    if state.get("signal") != "retry" or not state.get("tool_retry"):
        return None
    if state.get("fatal_error") is not None or ctx.clock() >= state["deadline"]:
        return None
    delay = float(state.get("retry_delay_s") or 0.0)
    names = ", ".join(sorted(state.get("tool_retry") or {}))
    return {
        "signal": "retry",
        "trace": [
            trace_step(
                state,
                "observe",
                ms,
                signal="retry",
                attempt=state.get("tool_attempt", 0),
                error_code=None,
                observation=f"retrying tool calls {names} in {delay:.2f}s",
            )
        ],
    }
