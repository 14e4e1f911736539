"""The model gate: every model call of a run keeps the budget promise.

A run makes four kinds of model call: `reason`'s step, the compose call, the fallback's
direct answer and the compaction summary. For each, and for each kind of run budget
(calls, tokens, USD), a scripted run is set up so that the budget is used up exactly at
that call: the call must be refused (not sent), and the run must not spend more than its
budget. The scripted model reports as its usage the gate's own worst-case estimate of the
call, so the promise "a run overspends by at most one call's estimate error" becomes
"a run never overspends".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from keel.config import ModelPrice, Settings
from keel.cost.accounting import estimate_call, estimate_tokens
from keel.errors import ConfigError, ErrorCode
from keel.nodes import COMPOSE_SYSTEM, DIRECT_ANSWER_PROMPT, SUMMARY_INSTRUCTIONS, text_of
from keel.runtime import open_agent
from keel.testing.scripted import CallInfo, FunctionModel, Reply
from keel.tools.registry import ToolRegistry, tool

pytestmark = pytest.mark.asyncio

SPEC = "scripted:gate"
PRICE = ModelPrice(input=1.0, output=4.0)
MAX_TOKENS = 40


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


TOOLS = ToolRegistry.of([lookup])
SCHEMAS = {t.name: t.openai_schema() for t in TOOLS}


def purpose_of(messages: list[BaseMessage]) -> str:
    system = text_of(messages[0].content)
    if system == SUMMARY_INSTRUCTIONS:
        return "summary"
    if system == COMPOSE_SYSTEM:
        return "compose"
    if DIRECT_ANSWER_PROMPT in system:
        return "direct_answer"
    return "reason"


@dataclass
class Recorder:
    """What each call was for and what it reported (its usage = the gate's estimate)."""

    calls: list[tuple[str, int, float]] = field(default_factory=list)

    def usage(self, messages: list[BaseMessage], info: CallInfo) -> dict[str, int]:
        schemas = [SCHEMAS[name] for name in info.tools]
        estimate = estimate_call(estimate_tokens(messages, schemas), MAX_TOKENS, PRICE)
        self.calls.append((purpose_of(messages), estimate.tokens, estimate.usd))
        prompt = estimate.prompt_tokens
        return {
            "input_tokens": prompt,
            "output_tokens": MAX_TOKENS,
            "total_tokens": estimate.tokens,
        }

    def purposes(self) -> list[str]:
        return [c[0] for c in self.calls]


def _call(key: str, index: int) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": "lookup", "args": {"key": key}, "id": f"c{index}"}]
    )


def script(site: str, rec: Recorder) -> Callable[[list[BaseMessage], CallInfo], Reply]:
    """The model of a run that reaches `site` on its third call (summary: its first)."""

    def fn(messages: list[BaseMessage], info: CallInfo) -> Reply:
        usage = rec.usage(messages, info)
        purpose = rec.calls[-1][0]
        n = sum(1 for p in rec.purposes() if p == "reason")
        if purpose == "summary":
            reply: AIMessage = AIMessage("Looked up k0 and k1.")
        elif purpose in ("compose", "direct_answer"):
            reply = AIMessage(f"{purpose}: value of k0")
        elif site == "reason" or (site == "summary" and n < 3):
            reply = _call(f"k{n - 1}" + ("!" * 400 if site == "summary" else ""), n)
        elif site == "compose":
            reply = _call("k0", n) if n == 1 else AIMessage("draft: value of k0")
        elif site == "direct_answer":
            reply = AIMessage("")  # neither an answer nor a tool call: malformed
        else:
            reply = AIMessage("value of k0")
        return reply.model_copy(update={"usage_metadata": usage})

    return fn


SITE_SETTINGS: dict[str, dict[str, Any]] = {
    "reason": {},
    "compose": {"compose_answers": "always"},
    "direct_answer": {"limits": {"max_repairs": 1}},
    "summary": {"compaction": {"max_prompt_tokens": 700, "keep_last": 2}},
}


@pytest.fixture
def run_site(settings_factory: Callable[..., Settings]) -> Callable[..., Any]:
    async def run(site: str, cost: dict[str, Any]) -> tuple[Any, dict[str, Any], Recorder]:
        rec = Recorder()
        settings = settings_factory(
            model=SPEC,
            pricing={SPEC: PRICE.model_dump()},
            max_tokens=MAX_TOKENS,
            grounded_answers=False,
            cache={"backend": "none"},
            cost=cost,
            **SITE_SETTINGS[site],
        )
        model = FunctionModel(fn=script(site, rec))
        async with open_agent(settings, model=model, tools=TOOLS) as agent:
            result = await agent.arun("Look k0 up")
            state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
        return result, state, rec

    return run


SITES = ["reason", "compose", "direct_answer", "summary"]


async def _site_index(run_site: Callable[..., Any], site: str) -> tuple[int, Recorder]:
    """Where `site`'s first call after the first two comes in an unlimited run (and that
    run's calls)."""
    _, _, free = await run_site(site, {})
    index = free.purposes().index(site, 2)
    return index, free


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("limit", ["run_model_calls", "run_tokens", "run_usd", "tenant_daily_usd"])
async def test_each_call_site_is_refused_when_it_would_break_the_budget(
    run_site: Callable[..., Any], site: str, limit: str
) -> None:
    k, free = await _site_index(run_site, site)
    before_tokens = sum(c[1] for c in free.calls[:k])
    before_usd = sum(c[2] for c in free.calls[:k])
    budget: dict[str, Any] = {
        "run_model_calls": k,
        "run_tokens": before_tokens + free.calls[k][1] - 1,
        "run_usd": round(before_usd + free.calls[k][2] - 1e-7, 8),
        "tenant_daily_usd": round(before_usd + free.calls[k][2] - 1e-7, 8),
    }
    result, state, rec = await run_site(site, {limit: budget[limit]})

    assert rec.purposes()[:k] == free.purposes()[:k]
    assert site not in rec.purposes()[k : k + 1], f"the {site} call was sent over the budget"
    usage = state["usage"]
    assert usage["model_calls"] == len(rec.calls)
    assert usage["total_tokens"] == sum(c[1] for c in rec.calls)
    assert usage["cost_usd"] == pytest.approx(sum(c[2] for c in rec.calls))
    spent = {
        "run_model_calls": usage["model_calls"],
        "run_tokens": usage["total_tokens"],
        "run_usd": usage["cost_usd"],
        "tenant_daily_usd": usage["cost_usd"],
    }[limit]
    assert spent <= budget[limit] + 1e-12
    trace = result.metadata.trace
    assert sum(s["tokens"] or 0 for s in trace) == usage["total_tokens"]
    if site == "compose":
        assert result.success and result.output == "draft: value of k0"
    if site in ("reason", "direct_answer"):
        assert not result.success
        expected = ErrorCode.BUDGET_EXCEEDED if site == "reason" else ErrorCode.MALFORMED_OUTPUT
        assert result.error_code == expected


async def test_a_hanging_summary_is_cut_off_at_the_models_timeout(
    settings_factory: Callable[..., Settings],
) -> None:
    """The summary call obeys the state's `model_timeout_s` like any call: it is cut off,
    counted as a call, and the digest stands in."""
    rec = Recorder()
    settings = settings_factory(
        model=SPEC,
        max_tokens=MAX_TOKENS,
        grounded_answers=False,
        cache={"backend": "none"},
        limits={"model_timeout_s": 0.3},
        **SITE_SETTINGS["summary"],
    )
    slow = _SlowSummary(fn=script("summary", rec))
    async with open_agent(settings, model=slow, tools=TOOLS) as agent:
        started = time.perf_counter()
        result = await agent.arun("Look k0 up")
        elapsed = time.perf_counter() - started
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and result.output == "value of k0"
    assert elapsed < 5
    failed = [s for s in result.metadata.trace if s["signal"] == "compact_failed"]
    assert failed and "TimeoutError" in (failed[0]["observation"] or "")
    assert state["usage"]["model_calls"] == len(rec.calls) + len(failed)


class _SlowSummary(FunctionModel):
    """The scripted model, but a summary call hangs for 30 s."""

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        if purpose_of(messages) == "summary":
            await asyncio.sleep(30)
        return await super()._agenerate(messages, *args, **kwargs)


def _replies(kind: str) -> Callable[[list[BaseMessage], CallInfo], Reply]:
    """A run whose last reply is malformed, or whose compose reply is unusable or fails."""

    def fn(messages: list[BaseMessage], info: CallInfo) -> Reply:
        purpose = purpose_of(messages)
        if kind == "malformed":
            return AIMessage("")  # neither an answer nor a tool call, every time
        if purpose == "compose":
            return ConnectionError("compose provider down") if kind == "compose_fails" else ""
        if not any(m.type == "tool" for m in messages):
            return _call("k0", info.index)
        return "draft: value of k0"

    return fn


@pytest.mark.parametrize("kind", ["malformed", "compose_unusable", "compose_fails"])
async def test_every_reply_is_accounted_in_the_usage_and_the_trace(
    settings_factory: Callable[..., Settings], kind: str
) -> None:
    """Tokens and USD the provider reported for every call (the last malformed reply, an
    unusable compose reply) are in the state's usage and in the trace's rows, which the
    result's totals and the metrics add up; a call that failed counts as a call."""
    reported: list[dict[str, Any]] = []
    inner = _replies(kind)

    def fn(messages: list[BaseMessage], info: CallInfo) -> Reply:
        reply = inner(messages, info)
        if not isinstance(reply, BaseException):
            message = AIMessage(reply) if isinstance(reply, str) else reply
            usage = {"input_tokens": 300, "output_tokens": 20, "total_tokens": 320}
            reported.append(usage)
            return message.model_copy(update={"usage_metadata": usage})
        reported.append({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0})
        return reply

    settings = settings_factory(
        model=SPEC,
        pricing={SPEC: PRICE.model_dump()},
        grounded_answers=False,
        cache={"backend": "none"},
        compose_answers="always",
        limits={"max_repairs": 1},
        degradation={"direct_answer": False},
    )
    async with open_agent(settings, model=FunctionModel(fn=fn), tools=TOOLS) as agent:
        result = await agent.arun("Look k0 up")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    tokens = sum(u["total_tokens"] for u in reported)
    usd = sum(u["input_tokens"] * 1.0 + u["output_tokens"] * 4.0 for u in reported) / 1e6
    assert state["usage"]["model_calls"] == len(reported) == (2 if kind == "malformed" else 3)
    assert state["usage"]["total_tokens"] == tokens
    assert state["usage"]["cost_usd"] == pytest.approx(usd)
    assert _meta(result)["total_tokens"] == tokens
    assert _meta(result)["total_cost"] == pytest.approx(usd)
    if kind != "malformed":
        assert result.success and result.output == "draft: value of k0"


def _meta(result: Any) -> dict[str, Any]:
    """The result's metadata as JSON (`keel run --json` prints the same)."""
    meta: dict[str, Any] = result.to_dict()["metadata"]
    return meta


async def test_a_usd_budget_fires_on_a_dated_model_name(
    settings_factory: Callable[..., Settings],
) -> None:
    """`openai:gpt-4o-mini-2024-07-18` costs what `gpt-4o-mini` costs, so its budget fires."""

    def loop(messages: list[BaseMessage], info: CallInfo) -> Reply:
        usage = {"input_tokens": 4000, "output_tokens": 100, "total_tokens": 4100}
        return _call(f"k{info.index}", info.index).model_copy(update={"usage_metadata": usage})

    model = FunctionModel(fn=loop)
    settings = settings_factory(
        model="openai:gpt-4o-mini-2024-07-18",
        cache={"backend": "none"},
        cost={"run_usd": 0.003},  # a call: $0.00066; its worst case: under $0.0013
        limits={"max_iterations": 50},
        degradation={"direct_answer": False},
    )
    async with open_agent(settings, model=model, tools=TOOLS) as agent:
        result = await agent.arun("Look everything up")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.error_code == ErrorCode.BUDGET_EXCEEDED
    assert state["usage"]["cost_usd"] == pytest.approx(model.calls * 0.00066)
    assert state["usage"]["cost_usd"] <= 0.003
    assert 2 <= model.calls < 50


async def test_an_unpriced_model_under_a_usd_budget_fails_at_start_up(
    settings_factory: Callable[..., Settings],
) -> None:
    model = FunctionModel(fn=lambda messages, info: "never called")
    settings = settings_factory(model="openai:my-finetune", cost={"run_usd": 1.0})
    with pytest.raises(ConfigError, match="no price is known for 'openai:my-finetune'"):
        async with open_agent(settings, model=model, tools=TOOLS):
            pass
    assert model.calls == 0
