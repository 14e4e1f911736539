"""`observe`: close one reason→act→observe cycle and decide whether to go on.

Goes on (`continue`) unless a tool failed beyond repair, the iteration limit is reached,
or the run's deadline has passed — then `degrade` (the graph takes the fallback edge).

When `act`'s own results leave nothing to decide (no retry scheduled, no failure beyond
repair, the limit and the deadline not reached), `act` closes the cycle itself with
`goes_on` and the graph routes straight back to `reason`: one graph step less per tool
call on the usual path. `observe` runs for everything else, and for runs whose checkpoint
was saved before `act` closed cycles itself.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from keel.errors import ErrorCode
from keel.nodes._records import error_record, trace_step
from keel.nodes._resilience import observe_tool_retry
from keel.nodes.context import AgentContext
from keel.types import AgentState

__all__ = ["goes_on", "observe"]

NODE = "observe"


async def observe(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = ctx.timer()
    retry = observe_tool_retry(state, ctx, (ctx.timer() - started) * 1000)
    if retry is not None:  # a transient tool failure: back to `act`, same cycle
        return retry
    update = goes_on(state, ctx)
    ms = (ctx.timer() - started) * 1000
    if update is not None:
        return {**update, "trace": [trace_step(state, NODE, ms, signal="continue")]}
    iteration = state.get("iteration", 0) + 1
    limits = state["limits"]
    fatal = state.get("fatal_error")
    if fatal is not None:
        code, message = ErrorCode(fatal["code"]), fatal["message"]
    elif iteration >= limits["max_iterations"]:
        code = ErrorCode.ITERATION_LIMIT
        message = f"reached the limit of {limits['max_iterations']} iterations"
    else:
        code, message = ErrorCode.DEADLINE_EXCEEDED, "the run's deadline passed"
    record = fatal or error_record(state, NODE, code, "degradable", message)
    return {
        "iteration": iteration,
        "iteration_deadline": None,
        "signal": "degrade",
        "fatal_error": record,
        "errors": [] if fatal else [record],
        "trace": [
            trace_step(state, NODE, ms, signal="degrade", error_code=str(code), observation=message)
        ],
    }


def goes_on(state: AgentState, ctx: AgentContext) -> dict[str, Any] | None:
    """The cycle's closing update when the run simply goes on (`signal=continue`): the
    iteration counted, its deadline cleared. None when there is something to decide: a
    tool retry is scheduled, a tool failed beyond repair, the iteration limit is reached
    or the run's deadline has passed."""
    if state.get("signal") == "retry" and state.get("tool_retry"):
        return None
    iteration = state.get("iteration", 0) + 1
    if (
        state.get("fatal_error") is not None
        or iteration >= state["limits"]["max_iterations"]
        or ctx.clock() >= state["deadline"]
    ):
        return None
    return {"iteration": iteration, "iteration_deadline": None, "signal": "continue"}
