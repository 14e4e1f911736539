"""Settings fail fast and name the field; model specs, prices and scripted models behave."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic_settings import EnvSettingsSource

from keel.config import ModelPrice, load_settings
from keel.errors import ConfigError, ModelSpecError
from keel.models import ModelSpec, cost_usd, make_chat_model, price_for, supports_native_tools
from keel.testing.scripted import FunctionModel, ScriptedModel


def test_defaults_and_public_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_MODEL", "openai:gpt-4o-mini")
    monkeypatch.setenv("KEEL_OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    monkeypatch.setenv("KEEL_OPENAI_API_KEY", "sk-test-123")
    monkeypatch.setenv("KEEL_CHECKPOINT_URL", "postgresql://postgres@127.0.0.1/x")
    monkeypatch.setenv("KEEL_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("KEEL_DATABASE_URL", "sqlite:////tmp/db.sqlite")
    monkeypatch.setenv("KEEL_LIMITS__MAX_ITERATIONS", "12")
    monkeypatch.setenv("KEEL_MODEL_TIERS__SIMPLE", "openai:gpt-4.1-nano")
    monkeypatch.setenv("KEEL_MODEL_TIERS__COMPLEX", "openai:gpt-4.1")
    monkeypatch.setenv("KEEL_COST__RUN_USD", "0.05")
    monkeypatch.setenv("KEEL_CACHE__BACKEND", "redis")
    s = load_settings()
    assert s.model == "openai:gpt-4o-mini"
    assert s.openai_base_url == "http://127.0.0.1:9999/v1"
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" not in repr(s)
    assert s.checkpoint_url.startswith("postgresql://")
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.database_url == "sqlite:////tmp/db.sqlite"
    assert s.limits.max_iterations == 12
    assert (s.model_tiers.simple, s.model_tiers.standard, s.model_tiers.complex) == (
        "openai:gpt-4.1-nano",
        None,
        "openai:gpt-4.1",
    )
    assert s.cost.run_usd == 0.05 and s.cache.backend == "redis"


def test_the_environment_is_read_once_per_distinct_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`keel` loads the settings for its logs, then with the command's overrides after the
    project's `env`: the same environment is walked once; a changed one is read again."""
    reads: list[int] = []
    read = EnvSettingsSource.__call__

    def counted(self: EnvSettingsSource) -> dict[str, object]:
        reads.append(1)
        return read(self)

    monkeypatch.setattr(EnvSettingsSource, "__call__", counted)
    monkeypatch.setenv("KEEL_LIMITS__MAX_ITERATIONS", "7")
    monkeypatch.setenv("KEEL_APPROVAL_TOOLS", '["sql_query"]')
    first = load_settings()
    again = load_settings(model="scripted:echo")
    assert len(reads) == 1
    assert again.model == "scripted:echo" and again.limits.max_iterations == 7
    assert first.approval_tools == again.approval_tools == ("sql_query",)
    monkeypatch.setenv("KEEL_LIMITS__MAX_ITERATIONS", "9")  # as a project's env would
    assert load_settings().limits.max_iterations == 9
    assert len(reads) == 2


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("KEEL_LIMITS__MAX_ITERATIONS", "0", "KEEL_LIMITS__MAX_ITERATIONS"),
        ("KEEL_LIMITS__TOOL_TIMEOUT_S", "soon", "KEEL_LIMITS__TOOL_TIMEOUT_S"),
        ("KEEL_MODEL", "gpt-4o", "KEEL_MODEL"),
        ("KEEL_CHECKPOINT_URL", "redis://x", "KEEL_CHECKPOINT_URL"),
        ("KEEL_TEMPERATURE", "9", "KEEL_TEMPERATURE"),
        ("KEEL_DURABILITY", "sometimes", "KEEL_DURABILITY"),
    ],
)
def test_invalid_config_fails_fast_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in str(info.value)


@pytest.mark.parametrize("spec", ["gpt-4o", "openai:", "warp:x", ":x"])
def test_bad_model_specs(spec: str) -> None:
    with pytest.raises(ModelSpecError):
        ModelSpec.parse(spec)


def test_prices_come_from_the_table_with_overrides() -> None:
    s = load_settings(pricing={"gpt-4o-mini": {"input": 1.0, "output": 2.0}})
    assert price_for(ModelSpec.parse("openai:gpt-4o-mini"), s) == ModelPrice(input=1.0, output=2.0)
    assert price_for(ModelSpec.parse("openai:gpt-4o"), s).input == 2.50
    assert price_for(ModelSpec.parse("local:qwen2.5-coder-0.5b"), s) == ModelPrice()
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 500_000,
        "input_token_details": {"cache_read": 400_000},
    }
    price = ModelPrice(input=2.0, output=10.0, cached_input=0.5)
    assert cost_usd(usage, price) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5 + 0.5 * 10.0)
    assert cost_usd(None, price) == 0.0


def test_openai_models_are_built_without_hidden_retries() -> None:
    s = load_settings(openai_base_url="http://127.0.0.1:1/v1", openai_api_key="k")
    model = asyncio.run(make_chat_model("openai:gpt-4o-mini", s))
    assert model.max_retries == 0  # type: ignore[attr-defined]
    assert str(model.openai_api_base) == "http://127.0.0.1:1/v1"  # type: ignore[attr-defined]
    assert supports_native_tools(model)


def test_scripted_specs() -> None:
    s = load_settings()
    native = asyncio.run(make_chat_model("scripted:sales", s))
    react = asyncio.run(make_chat_model("scripted:sales-react", s))
    assert supports_native_tools(native) and not supports_native_tools(react)
    with pytest.raises(ModelSpecError):
        asyncio.run(make_chat_model("scripted:nope", s))


def test_function_model_sees_tools_and_reports_usage() -> None:
    seen = []

    def fn(messages, info):  # type: ignore[no-untyped-def]
        seen.append((len(messages), info.tools, info.index))
        return "ok"

    model = FunctionModel(fn=fn)
    bound = model.bind_tools([{"type": "function", "function": {"name": "calc"}}])
    reply = asyncio.run(bound.ainvoke([HumanMessage("a" * 400)]))
    assert isinstance(reply, AIMessage) and reply.content == "ok"
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] == 100
    assert seen == [(1, ["calc"], 0)]


def test_scripted_model_raises_and_runs_out() -> None:
    model = ScriptedModel([ConnectionError("down"), "fine"])
    with pytest.raises(ConnectionError):
        asyncio.run(model.ainvoke("x"))
    assert asyncio.run(model.ainvoke("x")).content == "fine"
    with pytest.raises(AssertionError, match="script has 2 replies"):
        asyncio.run(model.ainvoke("x"))
