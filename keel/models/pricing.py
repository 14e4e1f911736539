"""Turning token usage into USD with the configured price table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keel.config import ModelPrice, Settings
from keel.models._spec import ModelSpec

__all__ = ["cost_usd", "price_for"]

_FREE = ModelPrice()


def price_for(spec: ModelSpec, settings: Settings) -> ModelPrice:
    """The price of a model: configured overrides first (by full spec, then by name).

    Local and scripted models are free unless a price is configured for them (benchmarks
    price a scripted model as a hosted one by setting `pricing["scripted:x"]`).
    """
    table = settings.price_table()
    for key in (str(spec), spec.name):
        if key in table:
            return table[key]
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
