"""Entry points around `AgentRuntime`: the synchronous `run` / `resume` for scripts, and the
settings a resume needs (the model the thread ran on)."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import RunnableConfig

from keel.agents import Agent
from keel.checkpoints import open_saver
from keel.config import Settings, load_settings
from keel.runtime.agent import open_agent
from keel.runtime.durable import nothing_to_resume
from keel.types import RunResult, flat

__all__ = ["resume", "resume_settings", "run"]


async def resume_settings(
    settings: Settings, thread_id: str, *, model: str | None = None
) -> Settings:
    """Settings to resume a thread with: the model it ran on, unless `model` overrides it.

    Raises `ThreadNotFoundError` before any model is built when the thread has no checkpoint.
    """
    async with open_saver(settings.checkpoint_url, settings.checkpoint_pool) as saver:
        found = await saver.aget_tuple(RunnableConfig(configurable={"thread_id": thread_id}))
    if found is None:
        raise nothing_to_resume(thread_id)
    spec = model or flat(found.checkpoint["channel_values"]).get("model_spec") or settings.model
    return (
        settings
        if spec == settings.model
        else load_settings(**{**settings.model_dump(exclude_unset=True), "model": spec})
    )


def run(
    question: str,
    *,
    agent: Agent | None = None,
    thread_id: str | None = None,
    **overrides: Any,
) -> RunResult:
    """Synchronous one-shot run of `agent` (the built-in data assistant when None);
    `overrides` are `Settings` fields."""

    async def go() -> RunResult:
        async with open_agent(agent, settings=load_settings(**overrides)) as bound:
            return await bound.arun(question, thread_id=thread_id)

    return asyncio.run(go())


def resume(thread_id: str, *, agent: Agent | None = None, **overrides: Any) -> RunResult:
    """Synchronous resume of a stopped or crashed run (of `agent`: the built-in data
    assistant when None)."""

    async def go() -> RunResult:
        settings = await resume_settings(load_settings(**overrides), thread_id)
        async with open_agent(agent, settings=settings) as bound:
            return await bound.aresume(thread_id)

    return asyncio.run(go())
