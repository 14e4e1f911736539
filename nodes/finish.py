"""`finish`: seal the run's outcome (a fallback's result, failed or degraded, passes through)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from keel.nodes._records import trace_step
from keel.nodes.context import AgentContext
from keel.types import AgentState, Outcome

NODE = "finish"


async def finish(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = ctx.timer()
    outcome = state.get("outcome")
    if outcome is None or state.get("signal") == "answer":
        outcome = Outcome(
            success=True,
            output=state.get("answer") or "",
            error=None,
            error_code=None,
            degraded=False,
        )
    return {
        "outcome": outcome,
        "trace": [
            trace_step(
                state, NODE, (ctx.timer() - started) * 1000, observation=outcome["output"][:500]
            )
        ],
    }
