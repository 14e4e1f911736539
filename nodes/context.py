"""The runtime context every node receives (LangGraph's `Runtime[AgentContext]`).

Nodes take the clock, timers, sleep and randomness from here — never from `time`,
`uuid` or `random` — so tests control them and a resumed node replays the same way.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from langchain_core.language_models import BaseChatModel

from keel.config import ModelPrice, Settings
from tools.registry import ToolRegistry

__all__ = ["AgentContext", "ReasoningMode"]

ReasoningMode = Literal["native", "react"]

DEFAULT_SYSTEM_PROMPT = (
    "You are Keel, a careful data assistant. Use the tools to look facts up instead of "
    "guessing; call a tool only when you need its result. When you have what you need, "
    "answer the question directly and concisely, with the numbers."
)


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
