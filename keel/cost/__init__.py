"""Cost control: token accounting, budgets checked before each call, and model tiers."""

from keel.cost.tiers import DEFAULT_TIER, TIER_NAMES, TierSpec, next_tier, tier_ladder

__all__ = ["DEFAULT_TIER", "TIER_NAMES", "TierSpec", "next_tier", "tier_ladder"]
