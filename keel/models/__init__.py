"""Chat models from spec strings: `openai:<model>`, `local:<model>`, `scripted:<name>`.

Every model is a LangChain chat model; the agent never knows which provider it talks to.
Provider clients are built with their own retries off: Keel retries as visible graph steps.
"""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from keel.config import Settings
from keel.errors import ModelSpecError
from keel.models._spec import PROVIDERS, ModelSpec
from keel.models.pricing import cost_usd, price_for

__all__ = [
    "PROVIDERS",
    "ModelSpec",
    "cost_usd",
    "make_chat_model",
    "price_for",
    "supports_native_tools",
]

Progress = Callable[[str], None]


async def make_chat_model(
    spec: str | ModelSpec, settings: Settings, *, progress: Progress | None = None
) -> BaseChatModel:
    """Build the chat model a spec names (starting the local server if needed)."""
    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    if parsed.provider == "openai":
        return _openai_model(parsed, settings)
    if parsed.provider == "scripted":
        from keel.testing.policies import scripted_model

        return scripted_model(parsed.name)
    if parsed.provider == "local":
        from keel.models.local import local_chat_model

        return await local_chat_model(parsed.name, settings, progress=progress)
    raise ModelSpecError(f"unknown provider in '{parsed}'")  # pragma: no cover - parse() guards


def _openai_model(spec: ModelSpec, settings: Settings) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    key = settings.openai_api_key
    return ChatOpenAI(
        model=spec.name,
        base_url=settings.openai_base_url,
        api_key=key if key is not None else SecretStr("unset"),
        temperature=settings.temperature,
        max_completion_tokens=settings.max_tokens,
        timeout=settings.limits.model_timeout_s,
        max_retries=0,
        stream_usage=True,
    )


def supports_native_tools(model: BaseChatModel) -> bool:
    """Whether `bind_tools` works on this model (the ReAct protocol is used otherwise)."""
    try:
        model.bind_tools([])
    except NotImplementedError:
        return False
    return True
