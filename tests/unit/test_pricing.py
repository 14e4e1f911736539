"""Prices: dated snapshots priced as their base model; unknown prices refused under a USD
budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keel.config import DEFAULT_PRICING, ModelPrice, Settings
from keel.errors import ConfigError
from keel.models import ModelSpec
from keel.models.pricing import base_model, known_price, price_for, run_price


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b"),
    ],
)
def test_base_model_drops_a_dated_snapshot_suffix(name: str, base: str) -> None:
    assert base_model(name) == base


def test_a_dated_snapshot_is_priced_as_its_base_model(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    dated = ModelSpec.parse("openai:gpt-4o-mini-2024-07-18")
    assert price_for(dated, settings) == DEFAULT_PRICING["gpt-4o-mini"]
    assert price_for(ModelSpec.parse("openai:gpt-4o-2024-08-06"), settings).input == 2.50
    own = settings_factory(pricing={"gpt-4o-mini-2024-07-18": {"input": 9.0, "output": 9.0}})
    assert price_for(dated, own) == ModelPrice(input=9.0, output=9.0)  # the snapshot's own
    assert known_price(ModelSpec.parse("openai:my-finetune"), settings) is None


@pytest.mark.parametrize("budget", [{"run_usd": 1.0}, {"tenant_daily_usd": 5.0}])
def test_an_unpriced_hosted_model_under_a_usd_budget_is_a_config_error(
    settings_factory: Callable[..., Settings], budget: dict[str, float]
) -> None:
    spec = ModelSpec.parse("openai:my-finetune")
    with pytest.raises(ConfigError, match="no price is known for 'openai:my-finetune'"):
        run_price(spec, settings_factory(cost=budget))
    assert run_price(spec, settings_factory()) == ModelPrice()  # no USD budget: allowed
    assert run_price(spec, settings_factory(cost={"run_tokens": 1000})) == ModelPrice()
    assert run_price(ModelSpec.parse("scripted:x"), settings_factory(cost=budget)) == ModelPrice()
    local = ModelSpec.parse("local:qwen2.5-coder-0.5b")
    assert run_price(local, settings_factory(cost=budget)) == ModelPrice()
    priced = settings_factory(cost=budget, pricing={"my-finetune": {"input": 1, "output": 2}})
    assert run_price(spec, priced) == ModelPrice(input=1, output=2)
