"""The tier router's decisions: start tier from the task, escalation, nearest tier."""

from __future__ import annotations

import pytest

from keel.cost.router import classify_task, escalation, start_tier

ALL = ["simple", "standard", "complex"]


@pytest.mark.parametrize(
    ("question", "tier"),
    [
        ("How many customers are there?", "simple"),
        ("List the product categories", "simple"),
        ("Which 3 products had the highest revenue last month?", "standard"),
        (
            "Compare revenue by region year over year and explain why the trend changed",
            "complex",
        ),
        (
            "Why did churn rise? Which cohort drove it? Recommend what to do next.",
            "complex",
        ),
    ],
)
def test_start_tier_from_the_task(question: str, tier: str) -> None:
    assert classify_task(question)[0] == tier
    decision = start_tier(question, ALL)
    assert decision.kind == "start" and decision.tier == tier and decision.previous is None
    assert decision.reason


def test_start_tier_falls_back_to_the_nearest_configured() -> None:
    decision = start_tier("How many customers are there?", ["standard", "complex"])
    assert decision.tier == "standard" and "not configured" in decision.reason
    assert start_tier("explain and compare the trend", ["simple", "standard"]).tier == "standard"


def test_routing_off_starts_at_standard() -> None:
    assert start_tier("How many customers?", ALL, routing=False).tier == "standard"


def test_escalates_one_tier_every_n_failures() -> None:
    args = {"escalate_after": 2, "failures": 0}
    assert escalation(ALL, "simple", signal="repair", repairs=1, **args) is None
    up = escalation(ALL, "simple", signal="repair", repairs=2, **args)
    assert up is not None and (up.kind, up.tier, up.previous) == ("escalate", "standard", "simple")
    assert escalation(ALL, "standard", signal="repair", repairs=3, **args) is None
    assert escalation(ALL, "complex", signal="repair", repairs=2, **args) is None
    failed = escalation(ALL, "standard", signal="retry", repairs=0, failures=2, escalate_after=2)
    assert failed is not None and failed.tier == "complex" and "failed calls" in failed.reason
    assert escalation(ALL, "simple", signal="answer", repairs=2, **args) is None
