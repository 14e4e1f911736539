"""Turning token usage into USD with the configured price table.

A dated snapshot (`gpt-4o-mini-2024-07-18`, `gpt-4-0613`) is priced as its base model unless
the table names the snapshot itself. A hosted model with no price at all is free to
`price_for` (catalogs, estimates), but `run_price` refuses it when a USD budget is set: the
budget could never fire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from keel.config import ModelPrice, Settings
from keel.errors import ConfigError
from keel.models._spec import ModelSpec

__all__ = ["FREE_PROVIDERS", "base_model", "cost_usd", "known_price", "price_for", "run_price"]

_FREE = ModelPrice()
FREE_PROVIDERS = ("local", "scripted")
"""Providers whose models cost nothing unless a price is configured for them."""
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


def base_model(name: str) -> str:
    """`name` without a dated snapshot suffix (`-YYYY-MM-DD` or `-MMDD`)."""
    return _SNAPSHOT.sub("", name)


def known_price(spec: ModelSpec, settings: Settings) -> ModelPrice | None:
    """The configured or published price of a model (full spec, then name, then the base
    model of a dated snapshot), or None when the table has none."""
    table = settings.price_table()
    base = base_model(spec.name)
    for key in (str(spec), spec.name, f"{spec.provider}:{base}", base):
        if key in table:
            return table[key]
    return None


def price_for(spec: ModelSpec, settings: Settings) -> ModelPrice:
    """The price of a model, free when none is known.

    Local and scripted models are free unless a price is configured for them (benchmarks
    price a scripted model as a hosted one by setting `pricing["scripted:x"]`).
    """
    price = known_price(spec, settings)
    return _FREE if price is None else price


def run_price(spec: ModelSpec, settings: Settings) -> ModelPrice:
    """The price runs are accounted at; a `ConfigError` for a hosted model without a price
    when a USD budget (per run or per tenant and day) is set."""
    price = known_price(spec, settings)
    if price is not None:
        return price
    cost = settings.cost
    budget = cost.run_usd is not None or cost.tenant_daily_usd is not None
    if budget and spec.provider not in FREE_PROVIDERS:
        raise ConfigError(
            f"no price is known for '{spec}', so the USD budget (KEEL_COST__RUN_USD / "
            "KEEL_COST__TENANT_DAILY_USD) could never fire: set its price, e.g. "
            f'KEEL_PRICING=\'{{"{spec.name}": {{"input": 0.15, "output": 0.60}}}}\' '
            "(USD per million tokens)"
        )
    return _FREE


def cost_usd(usage: Mapping[str, Any] | None, price: ModelPrice) -> float:
    """USD of one call from LangChain `usage_metadata` (cached prompt tokens priced apart)."""
    if not usage:
        return 0.0
    prompt = int(usage.get("input_tokens", 0))
    completion = int(usage.get("output_tokens", 0))
    cached = int((usage.get("input_token_details") or {}).get("cache_read", 0) or 0)
    cached_price = price.input if price.cached_input is None else price.cached_input
    dollars = (
        (prompt - cached) * price.input + cached * cached_price + completion * price.output
    ) / 1_000_000
    return round(dollars, 10)
