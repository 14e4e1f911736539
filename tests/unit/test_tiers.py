"""The tier mechanism: the ladder from settings, built models per tier, switching tiers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keel.config import Settings
from keel.cost import next_tier, tier_ladder
from keel.errors import ConfigError
from keel.runtime import build_context
from keel.testing.scripted import FunctionModel


def test_ladder_defaults_to_the_model_as_standard(
    settings_factory: Callable[..., Settings],
) -> None:
    ladder = tier_ladder(settings_factory(model="scripted:echo"))
    assert [(t.name, t.spec) for t in ladder] == [("standard", "scripted:echo")]


def test_ladder_is_cheapest_first_and_skips_unset(
    settings_factory: Callable[..., Settings],
) -> None:
    s = settings_factory(
        model="scripted:sales",
        model_tiers={"complex": "openai:gpt-4.1", "simple": "openai:gpt-4.1-nano"},
    )
    assert [(t.name, t.spec) for t in tier_ladder(s)] == [
        ("simple", "openai:gpt-4.1-nano"),
        ("standard", "scripted:sales"),
        ("complex", "openai:gpt-4.1"),
    ]


def test_bad_tier_spec_names_the_variable(settings_factory: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="KEEL_MODEL_TIERS__SIMPLE"):
        settings_factory(model_tiers={"simple": "gpt-4o"})


def test_next_tier_moves_one_rung() -> None:
    names = ["simple", "standard", "complex"]
    assert next_tier(names, "standard", +1) == "complex"
    assert next_tier(names, "standard", -1) == "simple"
    assert next_tier(names, "complex", +1) is None
    assert next_tier(names, "simple", -1) is None
    assert next_tier(names, "unknown", +1) is None


async def test_context_binds_each_tier(settings_factory: Callable[..., Settings]) -> None:
    s = settings_factory(
        model="scripted:echo",
        model_tiers={"simple": "scripted:echo", "complex": "scripted:sales-react"},
        pricing={"scripted:sales-react": {"input": 2.0, "output": 8.0}},
    )
    cheap = FunctionModel(fn=lambda m, i: "cheap")
    ctx = await build_context(s, tier_models={"simple": cheap})
    assert ctx.tier_names() == ["simple", "standard", "complex"]
    assert ctx.tier == "standard" and ctx.model_name == "scripted:echo"
    assert ctx.with_tier("simple").model is cheap
    complex_ctx = ctx.with_tier("complex")
    assert complex_ctx.model_name == "scripted:sales-react"
    assert complex_ctx.mode == "react"
    assert complex_ctx.price.output == 8.0
    assert ctx.with_tier("nonexistent") is ctx
    assert ctx.with_tier(None) is ctx
