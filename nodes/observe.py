"""`observe`: close one reason→act→observe cycle and decide whether to go on.

Goes on (`continue`) unless a tool failed beyond repair, the iteration limit is reached,
or the run's deadline has passed — then `degrade` (the graph takes the fallback edge).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from keel.errors import ErrorCode
from keel.nodes._records import error_record, trace_step
from keel.nodes._resilience import observe_tool_retry
from keel.nodes.context import AgentContext
from keel.types import AgentState

NODE = "observe"


async def observe(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = ctx.timer()
    iteration = state.get("iteration", 0) + 1
    limits = state["limits"]
    retry = observe_tool_retry(state, ctx, (ctx.timer() - started) * 1000)
    if retry is not None:  # a transient tool failure: back to `act`, same cycle
        return retry
    update: dict[str, Any] = {"iteration": iteration, "iteration_deadline": None}
    fatal = state.get("fatal_error")
    if fatal is not None:
        reason: tuple[ErrorCode, str] | None = (ErrorCode(fatal["code"]), fatal["message"])
    elif iteration >= limits["max_iterations"]:
        reason = (
            ErrorCode.ITERATION_LIMIT,
            f"reached the limit of {limits['max_iterations']} iterations",
        )
    elif ctx.clock() >= state["deadline"]:
        reason = (ErrorCode.DEADLINE_EXCEEDED, "the run's deadline passed")
    else:
        reason = None
    ms = (ctx.timer() - started) * 1000
    if reason is None:
        return {
            **update,
            "signal": "continue",
            "trace": [trace_step(state, NODE, ms, signal="continue")],
        }
    code, message = reason
    record = fatal or error_record(state, NODE, code, "degradable", message)
    return {
        **update,
        "signal": "degrade",
        "fatal_error": record,
        "errors": [] if fatal else [record],
        "trace": [
            trace_step(state, NODE, ms, signal="degrade", error_code=str(code), observation=message)
        ],
    }
