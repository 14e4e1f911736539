"""Cost control around `reason`: route to a tier, compact, fit the budget, then call.

`cost_controlled(reason)` is what the graph runs as its `reason` node. Before the wrapped
node makes its model call it:
1. routes: picks the starting tier for a new run, or escalates one tier after repeated
   malformed replies / failed calls, never into a tier that already failed in this run
   (`keel.cost.router`);
2. compacts: when the history is over the token threshold, summarizes its middle with the
   cheapest tier (the summary is kept in the state, see `nodes._compaction`);
3. fits the budget: if the active tier's worst-case call does not fit, the most capable
   cheaper tier that does. When none fits, `reason`'s call is refused by the model gate
   and the step degrades with `budget_exceeded` (fallback passes on the partial result).
Every decision is a `route` row in the trace. The summary, like every model call, goes
through `nodes._model_gate` (budget, breaker, rate limit, timeout, cache, accounting,
the tenant's ledger).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel

from keel.cost.accounting import CallEstimate
from keel.cost.budget import BudgetVerdict
from keel.cost.router import RouteDecision, escalation, start_tier
from keel.cost.tiers import DEFAULT_TIER
from keel.errors import is_control_flow
from keel.nodes._compaction import summarize_middle, summary_needed, system_tokens
from keel.nodes._model_gate import GatedReply, ModelGate, ModelRequest
from keel.nodes._prompt import reason_estimate
from keel.nodes._records import changes, trace_step
from keel.nodes.context import AgentContext
from keel.observability import events
from keel.tools.registry import Tool
from keel.types import AgentState, TraceStep, add_usage

__all__ = ["cached_tool_call", "cost_controlled", "estimate_for"]

NODE = "reason"
ROUTE = "route"

ReasonNode = TypeVar("ReasonNode", bound=Callable[..., Awaitable[dict[str, Any]]])


def _route_row(state: AgentState, decision: RouteDecision) -> TraceStep:
    return trace_step(
        state,
        ROUTE,
        0.0,
        signal=decision.kind,
        action=decision.tier,
        action_input={"from": decision.previous, "to": decision.tier},
        observation=decision.reason,
    )


def _route(state: AgentState, ctx: AgentContext, names: list[str]) -> RouteDecision | None:
    current = state.get("tier")
    if current is None or current not in names:
        return start_tier(state.get("question", ""), names, routing=ctx.settings.cost.routing)
    return escalation(
        names,
        current,
        signal=state.get("signal"),
        repairs=state.get("repair_attempt", 0),
        failures=state.get("model_attempt", 0),
        escalate_after=ctx.settings.cost.escalate_after,
        failed=state.get("tried_tiers", []),
    )


def estimate_for(state: AgentState, ctx: AgentContext) -> CallEstimate:
    """The worst case of `reason`'s next call on `ctx`'s model: this prompt plus `max_tokens`."""
    return reason_estimate(state, ctx)


async def _fit_budget(
    state: AgentState, ctx: AgentContext, gate: ModelGate, names: list[str], tier: str
) -> tuple[str, BudgetVerdict, BudgetVerdict | None]:
    """The tier to call (`tier`, or the best cheaper one that fits), its verdict, and why
    `tier` itself was refused (None if it fits)."""
    below = names[: names.index(tier)][::-1] if tier in names else []
    refused: BudgetVerdict | None = None
    for candidate in [tier, *below]:
        view = cast(AgentState, {**state, "tier": candidate})
        verdict = await gate.check(estimate_for(view, ctx.with_tier(candidate)))
        if verdict.ok:
            return candidate, verdict, refused
        refused = refused or verdict
        if verdict.limit == "run_model_calls":
            break
    assert refused is not None
    return tier, refused, refused


async def _summarize(
    state: AgentState, ctx: AgentContext, gate: ModelGate, names: list[str]
) -> dict[str, Any]:
    """Summarize the history's middle with the cheapest tier when compaction needs it.

    A refused or failed summary is not a failed step: the extractive digest stands in (a
    call that was sent still counts in the usage)."""
    history: list[BaseMessage] = list(state.get("messages", []))
    span = summary_needed(
        history,
        ctx.settings.compaction,
        system_tokens=system_tokens(ctx.system_prompt),
        summary=state.get("context_summary"),
        summary_upto=state.get("summary_upto", 0),
    )
    if span is None:
        return {}
    cheapest = ctx.with_tier(names[0])
    tier = cheapest.tier or names[0]
    calls: list[GatedReply] = []

    async def invoke(prompt: list[BaseMessage]) -> BaseMessage:
        request = ModelRequest("summary", cheapest, prompt, state["deadline"])
        calls.append(await gate.call(request))
        return calls[-1].message

    try:
        text = await summarize_middle(
            invoke,
            history,
            span,
            state.get("context_summary"),
            state.get("summary_upto", 0),
        )
    except Exception as exc:
        if is_control_flow(exc):
            raise
        why = f"{type(exc).__name__}: {exc}"[:300]
        row = trace_step(
            state,
            ROUTE,
            0.0,
            signal="compact_failed",
            action=tier,
            observation=f"no summary ({why}); the extractive digest stands in",
        )
        return {"usage": gate.used, "trace": [row]}
    usage = calls[-1].usage
    row = trace_step(
        state,
        ROUTE,
        0.0,
        signal="compact",
        action=tier,
        observation=f"summarized messages {span[0]}-{span[1] - 1} of the history",
        tokens=usage["total_tokens"],
        cost=usage["cost_usd"],
    )
    return {
        "context_summary": text,
        "summary_upto": span[1],
        "usage": gate.used,
        "trace": [row],
    }


def _merge(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Combine two partial updates of one step (traces in order, usage added up)."""
    out = {**before, **after}
    out["trace"] = [*before.get("trace", []), *after.get("trace", [])]
    if "usage" in before and "usage" in after:
        out["usage"] = add_usage(before["usage"], after["usage"])
    return out


def cost_controlled(node: ReasonNode) -> ReasonNode:
    """Wrap the `reason` node with routing, compaction and fitting the budget."""

    @functools.wraps(node)
    async def reason(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        before, view = await _prepare(state, runtime.context)
        return changes(state, _merge(before, await node(view, runtime)))

    return cast(ReasonNode, reason)


async def _prepare(state: AgentState, ctx: AgentContext) -> tuple[dict[str, Any], AgentState]:
    """The step's decisions before `reason` calls (its partial update so far) and the view
    of the state `reason` works on. A function of its own so that what the decisions used
    (the tier names, the gate, the verdicts) is freed before the model call: with a
    thousand runs waiting on theirs, each run's extra objects cost every full collection
    (issue 19)."""
    names = ctx.tier_names() or [ctx.tier or DEFAULT_TIER]
    decision = _route(state, ctx, names)
    tier = decision.tier if decision else (state.get("tier") or names[0])
    chose = decision is not None and len(names) > 1  # one tier: nothing was decided
    rows = [_route_row(state, decision)] if decision and chose else []
    before: dict[str, Any] = {"tier": tier, "trace": rows}
    if decision is not None and decision.kind == "escalate" and decision.previous:
        before["tried_tiers"] = _with(state.get("tried_tiers", []), decision.previous)
    view = state if state.get("tier") == tier else cast(AgentState, {**state, "tier": tier})
    gate = ModelGate(view, ctx)
    compacted = await _summarize(view, ctx, gate, names)
    if compacted:
        before = _merge(before, compacted)
        summary = {k: compacted[k] for k in ("context_summary", "summary_upto") if k in compacted}
        view = cast(AgentState, {**view, **summary, "usage": gate.spent})
    chosen, verdict, refused = await _fit_budget(view, ctx, gate, names, tier)
    if verdict.ok:  # a refusal is the model gate's to log, when `reason` calls
        decided = "downgrade" if chosen != tier else "allow"
        events.budget_decision(decided, tier=chosen, limit=(refused or verdict).limit)
    if chosen != tier and refused is not None:
        why = f"budget is tight on '{tier}': {refused.message}"
        down = RouteDecision("downgrade", chosen, tier, why)
        before = _merge(before, {"tier": chosen, "trace": [_route_row(state, down)]})
        view = cast(AgentState, {**view, "tier": chosen})
    return before, view


def _with(tiers: list[str], tier: str) -> list[str]:
    return tiers if tier in tiers else [*tiers, tier]


def cached_tool_call(
    ctx: AgentContext,
    state: AgentState,
    tool: Tool,
    arguments: BaseModel,
    invoke: Callable[[], Awaitable[str]],
) -> Callable[[], Awaitable[str]]:
    """`invoke`, answered from the tool-result cache when the tool is declared cacheable.

    The key is the tenant, the tool, the tool set's version and the validated arguments; a
    call that raises stores nothing.
    """
    caches = ctx.caches
    if caches is None or not tool.cacheable or not caches.enabled("tool"):
        return invoke
    tenant = state.get("tenant", "default")
    args = arguments.model_dump(mode="json")
    return lambda: caches.tool_result(tenant, tool.name, ctx.tools.version, args, invoke)
