"""Cost control: token accounting, budgets checked before each call, and model tiers.

- `accounting`: usage of a call from `usage_metadata` (streamed, cached tokens) and
  worst-case estimates before a call;
- `budget`: per-run USD / token / call limits and the tenant's daily USD budget;
- `ledger`: per-tenant daily spend over a shared store;
- `tiers` and `router`: the simple / standard / complex ladder and who moves a run on it.
Every model call of a run goes through them in `nodes._model_gate`.
"""

from keel.cost.accounting import CallEstimate, CallUsage, estimate_call, estimate_tokens
from keel.cost.budget import BudgetExceededError, BudgetVerdict, check_budget
from keel.cost.ledger import TenantLedger
from keel.cost.router import RouteDecision, classify_task, escalation, start_tier
from keel.cost.tiers import DEFAULT_TIER, TIER_NAMES, TierSpec, next_tier, tier_ladder

__all__ = [
    "DEFAULT_TIER",
    "TIER_NAMES",
    "BudgetExceededError",
    "BudgetVerdict",
    "CallEstimate",
    "CallUsage",
    "RouteDecision",
    "TenantLedger",
    "TierSpec",
    "check_budget",
    "classify_task",
    "escalation",
    "estimate_call",
    "estimate_tokens",
    "next_tier",
    "start_tier",
    "tier_ladder",
]
