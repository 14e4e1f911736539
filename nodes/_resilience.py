"""Glue between the nodes and `keel.resilience`: guarded calls and the retry wait.

Kept apart from `reason` and `act` so those nodes only gain one-line hooks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langchain_core.messages import BaseMessage

from keel.resilience import Classified, backoff_delay, retry_delay
from keel.types import AgentState
from nodes._records import text_of
from nodes.context import AgentContext

__all__ = ["guard_model_call", "guard_tool_call", "next_retry_delay", "retry_wait"]


def _estimate_tokens(prompt: list[BaseMessage], max_tokens: int) -> int:
    """A provider-independent estimate (~4 characters a token) for the tokens/min limit."""
    return sum(len(text_of(m.content)) // 4 + 1 for m in prompt) + max_tokens


@asynccontextmanager
async def guard_model_call(
    ctx: AgentContext, prompt: list[BaseMessage], deadline: float
) -> AsyncIterator[None]:
    """The model's breaker, rates and concurrency slot around one call."""
    async with ctx.resilience.model_call(
        ctx.model_name,
        tokens=_estimate_tokens(prompt, ctx.settings.max_tokens),
        clock=ctx.clock,
        sleep=ctx.sleep,
        deadline=deadline,
        lease_s=ctx.settings.limits.model_timeout_s + 5,
    ):
        yield


@asynccontextmanager
async def guard_tool_call(
    ctx: AgentContext, name: str, transient: tuple[type[BaseException], ...]
) -> AsyncIterator[None]:
    """The tool's breaker around one call."""
    async with ctx.resilience.tool_call(name, clock=ctx.clock, transient=transient):
        yield


def next_retry_delay(ctx: AgentContext, attempt: int, verdict: Classified) -> float:
    """The wait before retry `attempt`, chosen when the failure is recorded (so it is in the
    checkpoint and the trace): full-jitter backoff, stretched to any `Retry-After`."""
    return retry_delay(attempt, ctx.settings.retry, ctx.rng, verdict.retry_after)


def retry_wait(state: AgentState, ctx: AgentContext, attempt: int) -> float:
    """Seconds to sleep before retry `attempt`: the recorded delay, else a fresh backoff."""
    recorded = state.get("retry_delay_s")
    if recorded is not None:
        return float(recorded)
    return backoff_delay(attempt, ctx.settings.retry, ctx.rng)
