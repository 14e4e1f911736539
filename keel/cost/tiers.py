"""The tier ladder: which model spec serves each tier, cheapest first.

Tiers are `simple`, `standard` and `complex` (`keel.config.TIER_NAMES`). `standard` always
exists (it is `Settings.model` unless configured); the other two exist only when a spec is
configured for them. The router moves a run along this ladder; the resilience chain walks it
to degrade. Tier names are persisted in checkpoints (state key `tier`).
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.config import TIER_NAMES, Settings

__all__ = ["DEFAULT_TIER", "TIER_NAMES", "TierSpec", "next_tier", "tier_ladder"]

DEFAULT_TIER = "standard"


@dataclass(frozen=True)
class TierSpec:
    """One rung of the ladder."""

    name: str
    spec: str


def tier_ladder(settings: Settings) -> list[TierSpec]:
    """The configured tiers, cheapest first (`standard` is always there)."""
    configured = settings.model_tiers
    ladder = []
    for name in TIER_NAMES:
        spec = getattr(configured, name)
        if name == DEFAULT_TIER and spec is None:
            spec = settings.model
        if spec is not None:
            ladder.append(TierSpec(name, spec))
    return ladder


def next_tier(names: list[str], current: str, step: int) -> str | None:
    """The tier `step` rungs up (+1) or down (-1) from `current`, or None past either end."""
    if current not in names:
        return None
    index = names.index(current) + step
    return names[index] if 0 <= index < len(names) else None
