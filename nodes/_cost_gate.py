"""Cost control around `reason`: route to a tier, compact, check the budget, then call.

`cost_controlled(reason)` is what the graph runs as its `reason` node. Before the wrapped
node makes its model call it:
1. routes: picks the starting tier for a new run, or escalates one tier after repeated
   malformed replies / failed calls (`keel.cost.router`);
2. compacts: when the history is over the token threshold, summarizes its middle with the
   cheapest tier (the summary is kept in the state, see `nodes._compaction`);
3. checks the budget with the call's worst-case estimate (prompt + `max_tokens`): if the
   active tier does not fit, the most capable cheaper tier that does; if none fits, the
   step degrades with `budget_exceeded` (fallback passes on the partial result).
Every decision is a `route` row in the trace. After the call it books the spend against the
tenant's day, and it scopes the model-response cache to the run's tenant.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel

from keel.cache import cache_scope
from keel.cost.accounting import CallEstimate, estimate_call, estimate_tokens
from keel.cost.budget import BudgetVerdict, check_budget
from keel.cost.router import RouteDecision, escalation, start_tier
from keel.cost.tiers import DEFAULT_TIER
from keel.errors import ErrorCode, is_control_flow
from keel.nodes._compaction import summarize_middle, summary_needed, system_tokens
from keel.nodes._prompt import build_prompt
from keel.nodes._records import error_record, trace_step
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
    )


def estimate_for(state: AgentState, ctx: AgentContext) -> CallEstimate:
    """The worst case of the next call on `ctx`'s model: this prompt plus `max_tokens`."""
    tools = [t.openai_schema() for t in ctx.tools] if ctx.mode == "native" else []
    prompt = estimate_tokens(build_prompt(state, ctx), tools)
    return estimate_call(prompt, ctx.settings.max_tokens, ctx.price)


async def _tenant_spent(state: AgentState, ctx: AgentContext) -> float:
    if ctx.settings.cost.tenant_daily_usd is None:
        return 0.0
    return await ctx.ledger.spent(state.get("tenant", "default"), ctx.clock())


async def _fit_budget(
    state: AgentState, ctx: AgentContext, names: list[str], tier: str
) -> tuple[str, BudgetVerdict, BudgetVerdict | None]:
    """The tier to call (`tier`, or the best cheaper one that fits), its verdict, and why
    `tier` itself was refused (None if it fits)."""
    cost = ctx.settings.cost
    spent_today = await _tenant_spent(state, ctx)
    below = names[: names.index(tier)][::-1] if tier in names else []
    refused: BudgetVerdict | None = None
    for candidate in [tier, *below]:
        verdict = check_budget(
            state.get("budget"),
            state.get("usage"),
            estimate_for(cast(AgentState, {**state, "tier": candidate}), ctx.with_tier(candidate)),
            tenant_limit_usd=cost.tenant_daily_usd,
            tenant_spent_usd=spent_today,
        )
        if verdict.ok:
            return candidate, verdict, refused
        refused = refused or verdict
        if verdict.limit == "run_model_calls":
            break
    assert refused is not None
    return tier, refused, refused


async def _summarize(state: AgentState, ctx: AgentContext, names: list[str]) -> dict[str, Any]:
    history: list[BaseMessage] = list(state.get("messages", []))
    settings = ctx.settings.compaction
    span = summary_needed(
        history,
        settings,
        system_tokens=system_tokens(ctx.system_prompt),
        summary=state.get("context_summary"),
        summary_upto=state.get("summary_upto", 0),
    )
    if span is None:
        return {}
    cheapest = ctx.with_tier(names[0])
    prompt = estimate_tokens(history[span[0] : span[1]]) + 200
    estimate = estimate_call(prompt, ctx.settings.max_tokens, cheapest.price)
    verdict = check_budget(
        state.get("budget"),
        state.get("usage"),
        estimate,
        tenant_limit_usd=ctx.settings.cost.tenant_daily_usd,
        tenant_spent_usd=await _tenant_spent(state, ctx),
    )
    if not verdict.ok:
        return {}  # no room for a summary call: the extractive digest stands in
    try:
        text, usage = await summarize_middle(
            cheapest.model, history, span, state.get("context_summary")
        )
    except Exception as exc:
        if is_control_flow(exc):
            raise
        return {}  # a failed summary is not a failed step: the digest stands in
    row = trace_step(
        state,
        ROUTE,
        0.0,
        signal="compact",
        action=cheapest.tier or names[0],
        observation=f"summarized messages {span[0]}-{span[1] - 1} of the history",
        tokens=usage.total_tokens,
        cost=usage.cost_usd(cheapest.price),
    )
    return {
        "context_summary": text,
        "summary_upto": span[1],
        "usage": usage.totals(cheapest.price),
        "trace": [row],
    }


def _merge(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Combine two partial updates of one step (traces in order, usage added up)."""
    out = {**before, **after}
    out["trace"] = [*before.get("trace", []), *after.get("trace", [])]
    if "usage" in before and "usage" in after:
        out["usage"] = add_usage(before["usage"], after["usage"])
    return out


def _stop(state: AgentState, verdict: BudgetVerdict) -> dict[str, Any]:
    message = f"budget exhausted before the next model call: {verdict.message}"
    record = error_record(state, NODE, ErrorCode.BUDGET_EXCEEDED, "degradable", message)
    step = trace_step(
        state,
        NODE,
        0.0,
        signal="degrade",
        error_code=str(ErrorCode.BUDGET_EXCEEDED),
        observation=message,
    )
    return {"signal": "degrade", "fatal_error": record, "errors": [record], "trace": [step]}


def cost_controlled(node: ReasonNode) -> ReasonNode:
    """Wrap the `reason` node with routing, compaction, budgets, tenant spend and caching."""

    @functools.wraps(node)
    async def reason(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        ctx = runtime.context
        names = ctx.tier_names() or [ctx.tier or DEFAULT_TIER]
        decision = _route(state, ctx, names)
        tier = decision.tier if decision else (state.get("tier") or names[0])
        chose = decision is not None and len(names) > 1  # one tier: nothing was decided
        rows = [_route_row(state, decision)] if decision and chose else []
        before: dict[str, Any] = {"tier": tier, "trace": rows}
        view = cast(AgentState, {**state, "tier": tier})
        compacted = await _summarize(view, ctx, names)
        if compacted:
            before = _merge(before, compacted)
            view = cast(
                AgentState,
                {
                    **view,
                    "context_summary": compacted["context_summary"],
                    "summary_upto": compacted["summary_upto"],
                    "usage": add_usage(state.get("usage"), compacted["usage"]),
                },
            )
        chosen, verdict, refused = await _fit_budget(view, ctx, names, tier)
        decided = "deny" if not verdict.ok else "downgrade" if chosen != tier else "allow"
        events.budget_decision(decided, tier=chosen, limit=(refused or verdict).limit)
        if not verdict.ok:
            return _merge(before, _stop(state, verdict))
        if chosen != tier and refused is not None:
            why = f"budget is tight on '{tier}': {refused.message}"
            down = RouteDecision("downgrade", chosen, tier, why)
            before = _merge(before, {"tier": chosen, "trace": [_route_row(state, down)]})
            view = cast(AgentState, {**view, "tier": chosen})
        tenant = state.get("tenant", "default")
        model = ctx.with_tier(chosen).model_name
        repairing = state.get("signal") == "repair"
        with cache_scope(ctx.caches, tenant, model, read=not repairing) as scope:
            after = await node(view, runtime)
        if scope is not None and after.get("signal") in ("answer", "tools"):
            await scope.commit()
        out = _merge(before, after)
        spent = float(out.get("usage", {}).get("cost_usd", 0.0))
        if spent > 0:
            await ctx.ledger.add(tenant, ctx.clock(), spent)
        return out

    return cast(ReasonNode, reason)


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
