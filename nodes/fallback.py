"""`fallback`: end a run that cannot finish normally with a clean, honest result.

The result says why (an error code and a message) and passes on what the observations
so far support, instead of inventing an answer.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime

from keel.errors import ErrorCode
from keel.types import AgentState, Outcome
from nodes._records import text_of, trace_step
from nodes.context import AgentContext

NODE = "fallback"
EXCERPT = 600


def _last_observation(state: AgentState) -> str | None:
    for message in reversed(state.get("messages", [])):
        if isinstance(message, ToolMessage) and message.status != "error":
            return text_of(message.content)
    return None


async def fallback(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = ctx.timer()
    fatal = state.get("fatal_error")
    code = fatal["code"] if fatal else str(ErrorCode.MODEL_ERROR)
    reason = fatal["message"] if fatal else "the run could not finish"
    output = f"I could not complete this request ({code}): {reason}."
    found = _last_observation(state)
    if found:
        cut = found if len(found) <= EXCERPT else found[:EXCERPT] + "…"
        output += f"\nThe last result I obtained was: {cut}"
    outcome = Outcome(success=False, output=output, error=reason, error_code=code)
    return {
        "outcome": outcome,
        "trace": [
            trace_step(
                state, NODE, (ctx.timer() - started) * 1000, error_code=code, observation=reason
            )
        ],
    }
