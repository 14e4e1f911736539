"""The runtime context every node receives (LangGraph's `Runtime[AgentContext]`).

Nodes take the clock, timers, sleep and randomness from here — never from `time`,
`uuid` or `random` — so tests control them and a resumed node replays the same way.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from keel.cache import Caches
from keel.config import ModelPrice, Settings
from keel.cost.ledger import TenantLedger
from keel.journal import ToolJournal
from keel.resilience import Resilience
from keel.tools.registry import ToolRegistry

__all__ = ["AgentContext", "ModelBinding", "PromptMemo", "ReasoningMode"]

ReasoningMode = Literal["native", "react"]
PromptMemo = tuple[object, tuple[object, ...], list[BaseMessage], dict[int, int]]
"""`build_prompt`'s last prompt: the history list it was made from, what else it was made
from, the prompt, and its token estimates by the tool schemas' size."""

DEFAULT_SYSTEM_PROMPT = (
    "You are Keel, a careful data assistant. Use the tools to look facts up instead of "
    "guessing; call a tool only when you need its result. When you have what you need, "
    "answer the question directly and concisely, with the numbers."
)


@dataclass(frozen=True)
class ModelBinding:
    """One tier's built model: what `reason` calls when that tier is active."""

    tier: str
    spec: str
    model: BaseChatModel
    mode: ReasoningMode
    price: ModelPrice


@dataclass(frozen=True)
class AgentContext:
    """Run dependencies: built once per run by the composition root, never checkpointed."""

    settings: Settings
    model: BaseChatModel
    model_name: str
    tools: ToolRegistry
    mode: ReasoningMode = "native"
    price: ModelPrice = field(default_factory=ModelPrice)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    clock: Callable[[], float] = time.time
    """Wall-clock epoch seconds (deadlines)."""
    timer: Callable[[], float] = time.perf_counter
    """Monotonic seconds (durations)."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    resilience: Resilience = field(default_factory=Resilience)
    """Breakers and rate limits around model and tool calls (in-process unless Redis)."""
    tiers: Mapping[str, ModelBinding] = field(default_factory=dict)
    """Built models by tier name, cheapest first; empty means the single `model`."""
    tier: str | None = None
    """The tier `model` belongs to (set by `with_tier`)."""
    caches: Caches | None = None
    """Model-response, tool-result and run caches (None: no caching)."""
    ledger: TenantLedger = field(default_factory=TenantLedger)
    """Per-tenant daily spend, for `KEEL_COST__TENANT_DAILY_USD`."""
    journal: ToolJournal | None = None
    """The idempotency journal beside the checkpoints; None runs side effects unjournaled."""
    _tier_views: dict[str, AgentContext] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """`with_tier`'s results, made once per tier (nodes ask on every step)."""
    prompt_memo: list[PromptMemo] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    """The last prompt `build_prompt` made with this context (the cost gate's estimate and
    `reason`'s call build the same one)."""

    def tier_names(self) -> list[str]:
        """The available tiers, cheapest first."""
        return list(self.tiers)

    def with_tier(self, name: str | None) -> AgentContext:
        """This context with `model`, `mode` and `price` of tier `name` (unknown: unchanged)."""
        binding = self.tiers.get(name) if name else None
        if binding is None or name is None:
            return self
        view = self._tier_views.get(name)
        if view is None:
            view = self._tier_views[name] = replace(
                self,
                model=binding.model,
                model_name=binding.spec,
                mode=binding.mode,
                price=binding.price,
                tier=binding.tier,
            )
        return view
