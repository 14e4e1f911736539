"""`fallback`: the degradation chain, ending in a clean, honest result.

First another model tier (the graph goes back to `reason` with `signal=downgrade`), then
one direct answer without tools (a success marked `degraded` in the outcome, so results,
metrics and the scorecard tell it from a normal answer), then a clean failure: an error
code, the reason, and what the observations so far support, instead of an invented answer.
Which step a failure allows is `keel.resilience.degrade`; `nodes._degrade` applies it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime

from keel.errors import ErrorCode
from keel.nodes._degrade import direct_answer, plan_degradation, switch_tier
from keel.nodes._records import text_of, trace_step
from keel.nodes.context import AgentContext
from keel.types import AgentState, Outcome

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
    step = await plan_degradation(state, ctx)
    if step.kind == "tier":
        return switch_tier(state, ctx, step, (ctx.timer() - started) * 1000)
    usage = None
    spent: dict[str, Any] = {}
    note = ""
    if step.kind == "direct_answer":
        answer, usage, problem = await direct_answer(state, ctx, step.tier)
        spent = {"tokens": usage["total_tokens"], "cost": usage["cost_usd"]}
        if answer is not None:
            outcome = Outcome(
                success=True, output=answer, error=None, error_code=None, degraded=True
            )
            row = trace_step(
                state,
                NODE,
                (ctx.timer() - started) * 1000,
                signal="direct_answer",
                action=step.tier,
                observation=step.reason,
                **spent,
            )
            return {"outcome": outcome, "usage": usage, "trace": [row]}
        note = f" (then {step.reason}: failed, {problem})"
    fatal = state.get("fatal_error")
    code = fatal["code"] if fatal else str(ErrorCode.MODEL_ERROR)
    reason = fatal["message"] if fatal else "the run could not finish"
    output = f"I could not complete this request ({code}): {reason}."
    found = _last_observation(state)
    if found:
        cut = found if len(found) <= EXCERPT else found[:EXCERPT] + "…"
        output += f"\nThe last result I obtained was: {cut}"
    outcome = Outcome(success=False, output=output, error=reason, error_code=code, degraded=False)
    update: dict[str, Any] = {
        "outcome": outcome,
        "trace": [
            trace_step(
                state,
                NODE,
                (ctx.timer() - started) * 1000,
                error_code=code,
                observation=step.reason if step.kind == "fail" else reason + note,
                **spent,
            )
        ],
    }
    if usage is not None:
        update["usage"] = usage
    return update
