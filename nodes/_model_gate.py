"""One gate around every model call of a run: budget, breaker, rate limit, timeout, cache,
accounting and the tenant's ledger.

A run makes four kinds of model call: `reason`'s step, the compose call that writes the
final answer, the fallback's direct answer and the compaction summary. Each goes through
`ModelGate.call`, which applies, in order:

1. the budget: what the run has spent (the state's usage plus this step's earlier calls)
   plus the call's worst case (its prompt and bound tools, estimated, plus `max_tokens`)
   must fit the run's USD / token / call limits and the tenant's day; otherwise
   `BudgetExceededError` and nothing is sent. So a run overspends by at most one call's
   estimate error, whichever call it is;
2. the model's breaker, rates and a concurrency slot (`Resilience.model_call`);
3. the model-response cache, scoped to the run's tenant and the model; replies are held
   back until the step keeps them (`keep_replies`), so a rejected reply is never replayed;
4. the call itself, cut off at the state's `model_timeout_s` or the deadline, if sooner (a
   model with a `stall_timeout_s`, the `local:` one, ends a call that stops progressing
   itself, so only the deadline cuts it off: slow because busy is not stuck);
5. accounting: the reply's tokens and USD at the tier's price add up in `used` (a call
   that was sent and failed counts as a call without tokens; one refused before sending
   counts nothing), which the node writes into the state's `usage`; the USD is booked on
   the tenant's daily ledger at once.

The shape is langchain v1's `wrap_model_call` middleware and pydantic-ai's
`UsageLimits.check_before_request`: the cross-cutting policy wraps the call, nodes only
build prompts and read replies. Retrying is not the gate's job: a retry is a graph step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from keel.cache import cache_scope
from keel.cache.caches import CacheScope
from keel.cost.accounting import CallEstimate, CallUsage, estimate_call
from keel.cost.budget import BudgetExceededError, BudgetVerdict, check_budget
from keel.errors import CircuitOpenError, RateLimitedError, is_control_flow
from keel.nodes._records import NO_USAGE
from keel.nodes._tokens import estimate_tokens
from keel.nodes.context import AgentContext
from keel.observability import events
from keel.types import AgentState, UsageTotals, add_usage

__all__ = [
    "GatedReply",
    "ModelGate",
    "ModelRequest",
    "Purpose",
    "estimate_request",
    "was_sent",
]

Purpose = Literal["reason", "compose", "direct_answer", "summary"]
"""Which of a run's model calls this is (logged with a refusal)."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call a node wants to make."""

    purpose: Purpose
    ctx: AgentContext
    """The context of the tier to call: its model, spec (breaker, cache key) and price."""
    prompt: list[BaseMessage]
    deadline: float
    """Epoch seconds the call must end by (the run's deadline, or the iteration's)."""
    model: Runnable[LanguageModelInput, Any] | None = None
    """What to invoke (the tier's model with tools or stop words bound); None: `ctx.model`."""
    tools: Sequence[dict[str, Any]] = ()
    """The bound tool schemas: they are part of the prompt the estimate counts."""
    tool_chars: int | None = None
    """The schemas' size as the estimate counts it, when known (`ToolRegistry.schema_chars`);
    None: measured from `tools`."""
    cache_read: bool = True
    """False on a repair pass: the reply being repaired must not be read back."""
    prompt_tokens: int | None = None
    """The estimate of `prompt` with the tool schemas, when already made (`reason`'s
    prompt was estimated by the cost gate); None: made from `prompt` and the tools."""


@dataclass(frozen=True)
class GatedReply:
    """A reply that came through the gate, with what this one call used."""

    message: AIMessage
    usage: UsageTotals


def estimate_request(request: ModelRequest) -> CallEstimate:
    """The worst case of `request`: its prompt and tools, plus a reply of `max_tokens`."""
    ctx = request.ctx
    prompt = request.prompt_tokens
    if prompt is None:
        tool_chars = request.tool_chars
        if tool_chars is None:
            tool_chars = sum(len(json.dumps(t, default=str)) for t in request.tools)
        prompt = estimate_tokens(request.prompt, tool_chars)
    return estimate_call(prompt, ctx.settings.max_tokens, ctx.price)


def was_sent(exc: BaseException) -> bool:
    """Whether a call that raised `exc` reached the provider (and so counts as a call)."""
    return not isinstance(exc, CircuitOpenError | RateLimitedError | BudgetExceededError)


class ModelGate:
    """The gate for the model calls of one node step (see the module docstring).

    `state` is the step's view of the run: its `usage` is what was spent before the step,
    its `limits` give the timeout, its `budget` and `tenant` the limits to check.
    """

    __slots__ = ("_ctx", "_scopes", "_state", "_tenant", "used")

    def __init__(self, state: AgentState, ctx: AgentContext) -> None:
        self._state = state
        self._ctx = ctx
        self._tenant = state.get("tenant", "default")
        self._scopes: list[CacheScope] = []
        self.used: UsageTotals = {**NO_USAGE}
        """This step's calls so far: the node writes it into the state's `usage`."""

    @property
    def spent(self) -> UsageTotals:
        """The run's usage including this step's calls."""
        return add_usage(self._state.get("usage"), self.used)

    async def check(self, estimate: CallEstimate) -> BudgetVerdict:
        """Would a call of this worst case fit the run's and the tenant's budgets now?"""
        limit = self._ctx.settings.cost.tenant_daily_usd
        today = 0.0
        if limit is not None:
            today = await self._ctx.ledger.spent(self._tenant, self._ctx.clock())
        return check_budget(
            self._state.get("budget"),
            self.spent,
            estimate,
            tenant_limit_usd=limit,
            tenant_spent_usd=today,
        )

    async def call(self, request: ModelRequest) -> GatedReply:
        """Make one model call through the gate; raises what the call or a guard raised."""
        ctx = request.ctx
        tokens = await self._admit(request)
        timeout_s = float(self._state["limits"]["model_timeout_s"])
        if getattr(ctx.model, "stall_timeout_s", None) is not None:
            # a `local:` model ends a call that stops progressing itself: only the deadline
            timeout_s = max(request.deadline - ctx.clock(), 0.001)
        model = request.model if request.model is not None else ctx.model
        try:  # the guards, written out here: no coroutine of their own per call
            async with ctx.resilience.model_call(
                ctx.model_name,
                tokens=tokens,
                clock=ctx.clock,
                sleep=ctx.sleep,
                deadline=request.deadline,
                lease_s=timeout_s + 5,
            ):
                with cache_scope(
                    ctx.caches, self._tenant, ctx.model_name, read=request.cache_read
                ) as scope:
                    if scope is not None:
                        self._scopes.append(scope)
                    left = min(timeout_s, request.deadline - ctx.clock())
                    async with asyncio.timeout(max(left, 0.001)):  # no task of its own
                        reply = await model.ainvoke(request.prompt)
        except Exception as exc:
            if not is_control_flow(exc) and was_sent(exc):
                self._add({**NO_USAGE, "model_calls": 1})
            raise
        message = reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply))
        usage = CallUsage.from_message(message).totals(ctx.price)
        self._add(usage)
        if usage["cost_usd"] > 0:
            await ctx.ledger.add(self._tenant, ctx.clock(), usage["cost_usd"])
        return GatedReply(message, usage)

    async def _admit(self, request: ModelRequest) -> int:
        """The call's worst-case tokens, once its budgets allow it (`BudgetExceededError`
        when they do not). Apart from `call`, so that the estimate and the verdict are
        freed before the call waits on the model (issue 19)."""
        estimate = estimate_request(request)
        verdict = await self.check(estimate)
        if not verdict.ok:
            ctx = request.ctx
            events.budget_decision("deny", tier=ctx.tier, limit=verdict.limit, call=request.purpose)
            raise BudgetExceededError(verdict)
        return estimate.tokens

    def _add(self, usage: UsageTotals) -> None:
        self.used = add_usage(self.used, usage)

    async def keep_replies(self) -> None:
        """Store this step's replies in the model-response cache (the step could use them)."""
        for scope in self._scopes:
            await scope.commit()
        self._scopes.clear()
