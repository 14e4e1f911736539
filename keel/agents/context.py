"""The run dependencies (`AgentContext`) for a set of settings: models per tier, tools,
the system prompt, caches, the ledger and the resilience guards.

It lives below the runtime so an agent definition (`keel.agents.definition`) can build the
context itself when its graph runs without one (as a subgraph, or from `agent.graph`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from langchain_core.language_models import BaseChatModel

from keel.cache import Caches, attach_model_cache, open_caches
from keel.config import Settings
from keel.cost.ledger import TenantLedger
from keel.cost.tiers import DEFAULT_TIER, tier_ladder
from keel.models import ModelSpec, make_chat_model, supports_native_tools
from keel.models.pricing import run_price
from keel.nodes import AgentContext
from keel.nodes.context import DEFAULT_SYSTEM_PROMPT, ModelBinding
from keel.resilience import Resilience
from keel.tools import default_tools
from keel.tools.registry import ToolRegistry

__all__ = ["Progress", "build_context", "system_prompt_for"]

Progress = Callable[[str], None]


async def build_context(
    settings: Settings,
    *,
    model: BaseChatModel | None = None,
    tools: ToolRegistry | None = None,
    progress: Progress | None = None,
    tier_models: Mapping[str, BaseChatModel] | None = None,
    caches: Caches | None = None,
    instructions: str | None = None,
) -> AgentContext:
    """The run dependencies for these settings (starts the local model if it is one).

    Every configured tier gets its model (`model` overrides the `standard` tier's,
    `tier_models` any tier's); tiers with the same spec share one instance. `caches`
    defaults to the configured backend (`KEEL_CACHE__BACKEND`). `instructions` replaces the
    built-in system prompt (the SQL schema is appended either way when `sql_query` is on).
    """
    overrides = {**(tier_models or {})}
    if model is not None:
        overrides.setdefault(DEFAULT_TIER, model)
    built: dict[str, BaseChatModel] = {}
    bindings: dict[str, ModelBinding] = {}
    ladder = tier_ladder(settings)
    # priced before any model is built: a USD budget over an unpriced model fails at once
    prices = {rung.name: run_price(ModelSpec.parse(rung.spec), settings) for rung in ladder}
    for rung in ladder:
        spec = ModelSpec.parse(rung.spec)
        chat_model = overrides.get(rung.name) or built.get(rung.spec)
        if chat_model is None:
            chat_model = await make_chat_model(spec, settings, progress=progress)
        built.setdefault(rung.spec, chat_model)
        mode = settings.reasoning_mode
        if mode == "auto":
            mode = "native" if supports_native_tools(chat_model) else "react"
        bindings[rung.name] = ModelBinding(
            rung.name, str(spec), chat_model, mode, prices[rung.name]
        )
    default = bindings[DEFAULT_TIER]
    registry = (tools if tools is not None else default_tools()).requiring_approval(
        settings.approval_tools
    )
    caches = caches if caches is not None else open_caches(settings)
    if caches.enabled("model"):
        attach_model_cache(list(built.values()), settings.temperature)
    return AgentContext(
        settings=settings,
        model=default.model,
        model_name=default.spec,
        tools=registry,
        system_prompt=await system_prompt_for(settings, registry, instructions),
        mode=default.mode,
        price=default.price,
        tiers=bindings,
        tier=DEFAULT_TIER,
        caches=caches,
        ledger=TenantLedger(caches.backend),
        resilience=Resilience.from_settings(settings),
    )


async def system_prompt_for(
    settings: Settings, tools: ToolRegistry, instructions: str | None = None
) -> str:
    """The instructions (the built-in prompt when None), plus the SQL database's schema and
    rules when that tool is on."""
    base = DEFAULT_SYSTEM_PROMPT if instructions is None else instructions
    if "sql_query" not in tools.names():
        return base
    from keel.tools.sql_context import describe_database

    return f"{base}\n\n{await asyncio.to_thread(describe_database, settings)}"
