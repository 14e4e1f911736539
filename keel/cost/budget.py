"""Budgets checked before a model call: per run (USD, tokens, calls) and per tenant per day.

A call is allowed only if what was spent plus the call's worst-case estimate stays within
every limit, so a run overspends by at most one call's estimate error (the estimate of the
prompt being low), never by a whole call.
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.cost.accounting import CallEstimate
from keel.errors import ErrorCode, RunError
from keel.types import RunBudget, UsageTotals

__all__ = ["BudgetExceededError", "BudgetVerdict", "check_budget", "unlimited"]


@dataclass(frozen=True)
class BudgetVerdict:
    """Whether a call fits; when not, which limit it would break and why."""

    ok: bool
    limit: str | None = None
    """`run_usd`, `run_tokens`, `run_model_calls` or `tenant_daily_usd`."""
    message: str = ""


ALLOW = BudgetVerdict(ok=True)


class BudgetExceededError(RunError):
    """The next model call would break a budget: it was not sent (pydantic-ai's
    `UsageLimitExceeded` raised by `check_before_request`)."""

    code = ErrorCode.BUDGET_EXCEEDED

    def __init__(self, verdict: BudgetVerdict) -> None:
        super().__init__(f"budget exhausted before the next model call: {verdict.message}")
        self.verdict = verdict


def unlimited() -> RunBudget:
    return RunBudget(usd=None, tokens=None, model_calls=None)


def check_budget(
    budget: RunBudget | None,
    spent: UsageTotals | None,
    estimate: CallEstimate,
    *,
    tenant_limit_usd: float | None = None,
    tenant_spent_usd: float = 0.0,
) -> BudgetVerdict:
    """Would this call keep the run (and the tenant's day) within its limits?"""
    budget = budget or unlimited()
    usd = spent["cost_usd"] if spent else 0.0
    tokens = spent["total_tokens"] if spent else 0
    calls = spent["model_calls"] if spent else 0
    if budget["model_calls"] is not None and calls + 1 > budget["model_calls"]:
        return BudgetVerdict(
            False, "run_model_calls", f"the run's limit of {budget['model_calls']} model calls"
        )
    if budget["tokens"] is not None and tokens + estimate.tokens > budget["tokens"]:
        return BudgetVerdict(
            False,
            "run_tokens",
            f"{tokens} tokens used + ~{estimate.tokens} for the next call exceeds the run's "
            f"limit of {budget['tokens']}",
        )
    if budget["usd"] is not None and usd + estimate.usd > budget["usd"]:
        return BudgetVerdict(
            False,
            "run_usd",
            f"${usd:.6f} spent + ~${estimate.usd:.6f} for the next call exceeds the run's "
            f"budget of ${budget['usd']:.6f}",
        )
    if tenant_limit_usd is not None and tenant_spent_usd + estimate.usd > tenant_limit_usd:
        return BudgetVerdict(
            False,
            "tenant_daily_usd",
            f"the tenant has spent ${tenant_spent_usd:.6f} today; ~${estimate.usd:.6f} more "
            f"exceeds its daily budget of ${tenant_limit_usd:.6f}",
        )
    return ALLOW
