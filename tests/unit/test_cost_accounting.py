"""Accounting from `usage_metadata` (streamed and cached tokens), estimates and budgets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from keel.config import ModelPrice
from keel.cost.accounting import CallUsage, estimate_call, estimate_tokens, usage_of_chunks
from keel.cost.budget import check_budget
from keel.cost.ledger import TenantLedger, day_key
from keel.types import RunBudget, UsageTotals

PRICE = ModelPrice(input=2.0, output=8.0, cached_input=0.5)


def test_cached_prompt_tokens_are_priced_apart() -> None:
    usage = CallUsage.from_metadata(
        {
            "input_tokens": 1_000_000,
            "output_tokens": 100_000,
            "total_tokens": 1_100_000,
            "input_token_details": {"cache_read": 400_000},
        }
    )
    assert usage.cached_tokens == 400_000
    # 600k fresh at $2 + 400k cached at $0.5 + 100k out at $8
    assert usage.cost_usd(PRICE) == pytest.approx(1.2 + 0.2 + 0.8)
    totals = usage.totals(PRICE)
    assert totals["cached_tokens"] == 400_000 and totals["model_calls"] == 1
    assert totals["total_tokens"] == 1_100_000


def test_cached_tokens_fall_back_to_the_input_price() -> None:
    usage = CallUsage(input_tokens=1_000_000, cached_tokens=1_000_000)
    assert usage.cost_usd(ModelPrice(input=3.0, output=0.0)) == pytest.approx(3.0)


def test_missing_usage_costs_nothing() -> None:
    assert CallUsage.from_metadata(None).cost_usd(PRICE) == 0.0
    assert CallUsage.from_message(AIMessage("hi")).total_tokens == 0


class StreamingModel(BaseChatModel):
    """Streams a reply word by word; usage arrives on the last chunk, as OpenAI sends it."""

    @property
    def _llm_type(self) -> str:
        return "streaming-test"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for word in ["forty", " two"]:
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={
                    "input_tokens": 120,
                    "output_tokens": 2,
                    "total_tokens": 122,
                    "input_token_details": {"cache_read": 100},
                },
            )
        )


async def test_streamed_usage_matches_the_whole_reply() -> None:
    model = StreamingModel()
    chunks: list[AIMessageChunk] = []
    stream: AsyncIterator[Any] = model.astream([HumanMessage("q")])
    async for chunk in stream:
        chunks.append(chunk)
    assert len(chunks) >= 3
    streamed = usage_of_chunks(chunks)
    whole = CallUsage.from_message(await model.ainvoke([HumanMessage("q")]))
    assert streamed == whole == CallUsage(input_tokens=120, output_tokens=2, cached_tokens=100)
    assert streamed.cost_usd(PRICE) == pytest.approx((20 * 2 + 100 * 0.5 + 2 * 8) / 1e6)


def test_estimate_counts_messages_and_tool_schemas() -> None:
    msgs = [HumanMessage("x" * 400)]
    bare = estimate_tokens(msgs)
    assert bare == 100 + 4
    assert estimate_tokens(msgs, [{"name": "t", "description": "d" * 400}]) > bare + 100
    est = estimate_call(bare, 1000, PRICE)
    assert est.tokens == bare + 1000
    assert est.usd == pytest.approx((bare * 2.0 + 1000 * 8.0) / 1e6)


def spent(usd: float = 0.0, tokens: int = 0, calls: int = 0) -> UsageTotals:
    return UsageTotals(
        input_tokens=tokens, output_tokens=0, total_tokens=tokens, cost_usd=usd, model_calls=calls
    )


@pytest.mark.parametrize(
    ("budget", "used", "limit"),
    [
        (RunBudget(usd=0.01, tokens=None, model_calls=None), spent(usd=0.0095), "run_usd"),
        (RunBudget(usd=None, tokens=2000, model_calls=None), spent(tokens=1500), "run_tokens"),
        (RunBudget(usd=None, tokens=None, model_calls=3), spent(calls=3), "run_model_calls"),
    ],
)
def test_budget_refuses_a_call_that_would_break_a_limit(
    budget: RunBudget, used: UsageTotals, limit: str
) -> None:
    est = estimate_call(100, 500, PRICE)  # 600 tokens, $0.0042
    verdict = check_budget(budget, used, est)
    assert not verdict.ok and verdict.limit == limit
    assert verdict.message


def test_budget_allows_a_call_that_fits_exactly() -> None:
    est = estimate_call(100, 500, PRICE)
    budget = RunBudget(usd=0.0042, tokens=600, model_calls=1)
    assert check_budget(budget, spent(), est).ok
    assert check_budget(None, None, est).ok


def test_tenant_daily_budget() -> None:
    est = estimate_call(100, 500, PRICE)
    assert check_budget(None, None, est, tenant_limit_usd=1.0, tenant_spent_usd=0.99).ok is True
    verdict = check_budget(None, None, est, tenant_limit_usd=1.0, tenant_spent_usd=0.9990)
    assert verdict.limit == "tenant_daily_usd"


async def test_ledger_adds_per_tenant_per_utc_day() -> None:
    ledger = TenantLedger()
    day1, day2 = 1_700_000_000.0, 1_700_000_000.0 + 86_400
    await ledger.add("acme", day1, 0.25)
    assert await ledger.add("acme", day1 + 60, 0.5) == pytest.approx(0.75)
    assert await ledger.spent("acme", day1) == pytest.approx(0.75)
    assert await ledger.spent("other", day1) == 0.0
    assert await ledger.spent("acme", day2) == 0.0
    assert day_key("acme", day1) != day_key("acme", day2)
