"""The router never escalates back into a tier that failed earlier in the run, and the
fallback never switches back to a tier the router escalated away from (issue 18 item 13)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from keel.config import Settings
from keel.runtime import open_agent
from keel.testing.scripted import CallInfo, FunctionModel, Reply
from keel.tools.registry import ToolRegistry

pytestmark = pytest.mark.asyncio

TIERS = {"simple": "scripted:cheap", "standard": "scripted:mid", "complex": "scripted:big"}


def model(name: str, log: list[str], reply: Callable[[], Reply]) -> FunctionModel:
    def fn(messages: list[BaseMessage], info: CallInfo) -> Reply:
        log.append(name)
        return reply()

    return FunctionModel(fn=fn, model_name=name)


def down() -> Reply:
    return ConnectionError("provider down")


def malformed() -> Reply:
    return ""  # neither an answer nor a tool call


def answers(name: str) -> Callable[[], Reply]:
    return lambda: f"answer from {name}"


async def _run(
    settings_factory: Callable[..., Settings], question: str, models: dict[str, FunctionModel]
) -> Any:
    settings = settings_factory(
        model_tiers=TIERS,
        limits={"max_model_attempts": 1, "max_repairs": 3},
        cost={"escalate_after": 2},
        cache={"backend": "none"},
        degradation={"direct_answer": False},
    )
    async with open_agent(settings, tools=ToolRegistry(), tier_models=models) as agent:
        return await agent.arun(question)


def _moves(result: Any) -> list[tuple[str, str]]:
    trace = result.to_dict()["metadata"]["trace"]
    return [
        (s["signal"], s["action"])
        for s in trace
        if s["signal"] in ("start", "escalate", "downgrade")
    ]


async def test_no_escalation_back_into_the_tier_that_failed(
    settings_factory: Callable[..., Settings],
) -> None:
    """standard fails → fallback tries simple → simple's replies are malformed twice: the
    router goes up to complex, not back to standard."""
    log: list[str] = []
    models = {
        "simple": model("simple", log, malformed),
        "standard": model("standard", log, down),
        "complex": model("complex", log, answers("complex")),
    }
    result = await _run(settings_factory, "Which 3 products had the highest revenue?", models)
    assert result.success and result.output == "answer from complex"
    assert log == ["standard", "simple", "simple", "complex"]
    assert _moves(result) == [
        ("start", "standard"),
        ("downgrade", "simple"),
        ("escalate", "complex"),
    ]


async def test_no_fallback_back_into_the_tier_escalated_away_from(
    settings_factory: Callable[..., Settings],
) -> None:
    """simple's replies are malformed twice → escalate to standard → standard fails: the
    fallback goes on to complex, not back to simple."""
    log: list[str] = []
    models = {
        "simple": model("simple", log, malformed),
        "standard": model("standard", log, down),
        "complex": model("complex", log, answers("complex")),
    }
    result = await _run(settings_factory, "How many customers are there?", models)
    assert result.success and result.output == "answer from complex"
    assert log == ["simple", "simple", "standard", "complex"]
    assert _moves(result) == [
        ("start", "simple"),
        ("escalate", "standard"),
        ("downgrade", "complex"),
    ]
