"""Escalation passes over tiers that already failed in this run (issue 18 item 13)."""

from __future__ import annotations

from keel.cost.router import escalation

ALL = ["simple", "standard", "complex"]


def test_escalation_skips_a_tier_that_failed_in_this_run() -> None:
    args = {"signal": "repair", "repairs": 2, "failures": 0, "escalate_after": 2}
    up = escalation(ALL, "simple", failed=["standard", "simple"], **args)
    assert up is not None and (up.tier, up.previous) == ("complex", "simple")
    assert escalation(ALL, "simple", failed=["standard", "complex"], **args) is None
    plain = escalation(ALL, "simple", failed=[], **args)
    assert plain is not None and plain.tier == "standard"
