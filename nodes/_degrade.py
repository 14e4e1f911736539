"""`fallback`'s degradation chain: another tier, then a direct answer, then a clean failure.

The policy (which failure allows which step, in which tier order) is
`keel.resilience.degrade`; this module applies it to a run: it skips tiers whose breaker is
open, switches the active tier (the graph goes back to `reason`), or makes the one
no-tools call of the direct answer. Each step is a `fallback` row in the trace that names
what was tried and why.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from keel.errors import MalformedOutputError, is_control_flow
from keel.nodes._grounding import check_grounded, check_no_unrun_query
from keel.nodes._model_gate import ModelGate, ModelRequest
from keel.nodes._records import text_of, trace_step
from keel.nodes.context import AgentContext
from keel.resilience.degrade import (
    DegradeStep,
    allows_direct_answer,
    allows_other_tier,
    tier_candidates,
)
from keel.types import AgentState, UsageTotals

__all__ = [
    "DIRECT_ANSWER_MAX_TOKENS",
    "DIRECT_ANSWER_PROMPT",
    "direct_answer",
    "plan_degradation",
    "switch_tier",
]

NODE = "fallback"
DIRECT_ANSWER_PROMPT = (
    "Tools are not available any more. Answer the question directly, using only the tool "
    "results below (if any). Say plainly what you could not find out; do not guess numbers."
)
OBSERVATIONS_LIMIT = 6000
DIRECT_ANSWER_MAX_TOKENS = 256
"""The reply bound of a direct answer (or `max_tokens`, when lower): what the results show,
or that they show nothing, is a few sentences. Unbounded, a small model that repeats itself
writes until `max_tokens` (1,024): 3.7 min on a loaded 2-core machine, past the run's
deadline, for an answer the grounding check then refuses anyway."""


def _active_tier(state: AgentState, ctx: AgentContext) -> str | None:
    names = ctx.tier_names()
    return state.get("tier") or ctx.tier or (names[0] if names else None)


def _failure_text(state: AgentState) -> str:
    fatal = state.get("fatal_error")
    return f"{fatal['code']}: {fatal['message']}" if fatal else "the run could not finish"


async def plan_degradation(state: AgentState, ctx: AgentContext) -> DegradeStep:
    """The next step down the chain for this run's failure."""
    failure = state.get("fatal_error")
    options = ctx.settings.degradation
    names = ctx.tier_names()
    current = _active_tier(state, ctx)
    now = ctx.clock()
    failed = [*state.get("tried_tiers", []), *([current] if current else [])]
    failed_specs = {ctx.with_tier(t).model_name for t in failed}
    skipped: list[str] = []
    if options.tiers and allows_other_tier(failure) and len(names) > 1:
        for tier in tier_candidates(names, current, failed):
            spec = ctx.with_tier(tier).model_name
            if spec in failed_specs:
                continue
            if await ctx.resilience.model_refused(spec, now):
                skipped.append(f"{tier} (breaker open)")
                continue
            why = f"tier {current} failed ({_failure_text(state)}); trying tier {tier} ({spec})"
            return DegradeStep("tier", tier, why)
    note = f"; skipped {', '.join(skipped)}" if skipped else ""
    if options.direct_answer and allows_direct_answer(failure) and now < state["deadline"]:
        options_left: list[str | None] = [current, *tier_candidates(names, current, [])]
        for option in options_left:
            spec = ctx.with_tier(option).model_name
            if not await ctx.resilience.model_refused(spec, now):
                why = f"answering without tools on {spec} after: {_failure_text(state)}{note}"
                return DegradeStep("direct_answer", option, why)
            skipped.append(f"{option} (breaker open)")
        note = f"; skipped {', '.join(skipped)}"
    return DegradeStep("fail", None, f"{_failure_text(state)}{note}")


def switch_tier(
    state: AgentState, ctx: AgentContext, step: DegradeStep, ms: float
) -> dict[str, Any]:
    """The update that makes `reason` try again on `step.tier`, with fresh step counters."""
    current = _active_tier(state, ctx)
    fatal = state.get("fatal_error")
    return {
        "signal": "downgrade",
        "tier": step.tier,
        "tried_tiers": [  # each tier once: the chain ends even if routing moves tiers again
            *state.get("tried_tiers", []),
            *([current] if current else []),
            *([step.tier] if step.tier else []),
        ],
        "fatal_error": None,
        "model_attempt": 0,
        "repair_attempt": 0,
        "repair_hint": None,
        "rejected_output": None,
        "retry_delay_s": None,
        "iteration_deadline": None,
        "trace": [
            trace_step(
                state,
                NODE,
                ms,
                signal="downgrade",
                action=step.tier,
                action_input={"from": current, "to": step.tier},
                error_code=fatal["code"] if fatal else None,
                observation=step.reason,
            )
        ],
    }


def _direct_prompt(state: AgentState, ctx: AgentContext) -> list[BaseMessage]:
    found = [
        text_of(m.content)
        for m in state.get("messages", [])
        if isinstance(m, ToolMessage) and m.status != "error"
    ]
    results = "\n".join(f"- {r}" for r in found)[:OBSERVATIONS_LIMIT] or "(none)"
    question = state.get("question", "")
    return [
        SystemMessage(f"{ctx.system_prompt}\n\n{DIRECT_ANSWER_PROMPT}"),
        HumanMessage(f"Question: {question}\n\nTool results so far:\n{results}"),
    ]


_ACTION_LINE = re.compile(r"^\s*Action\s*:", re.MULTILINE)


def _answer_text(reply: AIMessage) -> str:
    """The answer in a no-tools reply, or "" when the model still asked for a tool."""
    text = text_of(reply.content).strip()
    if reply.tool_calls or reply.invalid_tool_calls:
        return ""
    if "Final Answer:" in text:  # a ReAct-trained model may still use its protocol
        return text.split("Final Answer:", 1)[1].strip()
    return "" if _ACTION_LINE.search(text) else text


async def direct_answer(
    state: AgentState, ctx: AgentContext, tier: str | None
) -> tuple[str | None, UsageTotals, str]:
    """One no-tools call through the model gate: (answer or None, what the call used, what
    went wrong if None). A call the budget cannot afford is not made."""
    active = ctx.with_tier(tier)
    prompt = _direct_prompt(state, active)
    gate = ModelGate(state, active)
    bound = active.model.bind(max_tokens=min(DIRECT_ANSWER_MAX_TOKENS, ctx.settings.max_tokens))
    request = ModelRequest("direct_answer", active, prompt, state["deadline"], model=bound)
    try:
        reply = (await gate.call(request)).message
    except Exception as exc:
        if is_control_flow(exc):
            raise
        return None, gate.used, f"{type(exc).__name__}: {exc}"
    text = _answer_text(reply)
    if not text or reply.response_metadata.get("finish_reason") == "length":
        return None, gate.used, "the reply was empty, cut off, or asked for a tool"
    if ctx.settings.grounded_answers:
        try:
            check_no_unrun_query(text, state.get("question", ""), ctx.tools.names())
            check_grounded(text, state.get("messages", []), text_of(prompt[0].content))
        except MalformedOutputError as exc:
            return None, gate.used, f"the direct answer was not grounded: {exc.message}"
    await gate.keep_replies()
    return text, gate.used, ""
