"""Secrets never leave a run: not in `RunResult`, the trace, the checkpoints, the logs of a
library user who configured nothing, or LangSmith (tool arguments included)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langsmith import utils as ls_utils

from keel.config import Settings
from keel.errors import ModelCallError
from keel.runtime import open_agent
from keel.testing.langsmith_capture import CaptureServer
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.registry import ToolRegistry, tool

MASK = "[REDACTED]"


@pytest.fixture
def secrets() -> dict[str, str]:
    """Fresh values per test: a key with no known shape, a URL password, an `sk-` key."""
    tag = uuid.uuid4().hex[:12]
    return {
        "api_key": f"kx-{tag}-custom-gateway-key",
        "url_password": f"pw{tag}Z",
        "shaped_key": f"sk-proj-{tag}abcdefghij",
    }


def leak_text(s: dict[str, str]) -> str:
    return (
        f"401 invalid key {s['api_key']} for https://keel:{s['url_password']}@proxy.example/v1 "
        f"(also tried {s['shaped_key']})"
    )


def assert_clean(text: str, s: dict[str, str], where: str) -> None:
    for name, value in s.items():
        assert value not in text, f"{name} leaked into {where}: {text[:400]}"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


async def test_a_provider_error_with_secrets_is_masked_in_result_trace_and_checkpoints(
    agent_factory: Any, secrets: dict[str, str]
) -> None:
    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        raise ModelCallError(leak_text(secrets), kind="degradable")

    async with agent_factory(FunctionModel(fn=fn), openai_api_key=secrets["api_key"]) as agent:
        result = await agent.arun("hello")
        values = (await agent.graph.aget_state(agent.config(result.thread_id))).values
        history = [
            s.values async for s in agent.graph.aget_state_history(agent.config(result.thread_id))
        ]
    assert not result.success and MASK in (result.error or "")
    assert "401 invalid key" in (result.error or ""), "the useful part of the error stays"
    assert_clean(result.error or "", secrets, "RunResult.error")
    assert_clean(result.output, secrets, "RunResult.output")
    assert_clean(json.dumps(result.to_dict(), default=str), secrets, "keel run --json")
    assert_clean(json.dumps(values, default=str), secrets, "the last checkpoint")
    assert_clean(json.dumps(history, default=str), secrets, "the checkpoint history")


async def test_a_tool_error_with_a_connection_string_is_masked_for_the_model_too(
    agent_factory: Any, secrets: dict[str, str]
) -> None:
    dsn = f"postgresql://app:{secrets['url_password']}@db.internal:5432/sales"

    @tool
    def report(day: str) -> str:
        """The day's sales report."""
        raise ValueError(f"could not connect to {dsn}")

    seen: list[str] = []

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            return AIMessage(
                content="", tool_calls=[{"name": "report", "args": {"day": "mon"}, "id": "c1"}]
            )
        seen.append(str(results[-1].content))
        return "The report is unavailable."

    async with agent_factory(FunctionModel(fn=fn), tools=ToolRegistry.of([report])) as agent:
        result = await agent.arun("Monday's report?")
        values = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success
    assert seen and "db.internal" in seen[0] and MASK in seen[0]
    assert_clean(seen[0], secrets, "the observation the model read")
    assert_clean(json.dumps(values, default=str), secrets, "the checkpoint")
    assert_clean(json.dumps(result.to_dict(), default=str), secrets, "the result")


async def test_a_library_user_gets_redacted_logs_on_stderr_not_stdout(
    settings_factory: Callable[..., Settings],
    secrets: dict[str, str],
    restored_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not structlog.is_configured()

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        raise ModelCallError(leak_text(secrets), kind="degradable")

    settings = settings_factory(openai_api_key=secrets["api_key"])
    async with open_agent(settings, model=FunctionModel(fn=fn)) as agent:
        result = await agent.arun("hello")
    assert not result.success
    out, err = capsys.readouterr()
    assert "run.end" not in out, "log lines must not mix with a program's stdout"
    assert "run.end" in err and MASK in err
    assert_clean(err, secrets, "the log stream")


async def test_logs_configured_before_the_agent_mask_its_key(
    settings_factory: Callable[..., Settings], secrets: dict[str, str], restored_logging: None
) -> None:
    from keel.config import ObservabilitySettings
    from keel.observability.logs import configure_logging, get_logger

    buffer = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="json"), stream=buffer)  # no settings
    settings = settings_factory(openai_api_key=secrets["api_key"])
    async with open_agent(settings, model=FunctionModel(fn=lambda m, i: "hi")):
        get_logger().warning("provider.said", detail=leak_text(secrets))
    assert "provider.said" in buffer.getvalue()
    assert_clean(buffer.getvalue(), secrets, "a log line")


@pytest.fixture
def langsmith_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def point(url: str) -> None:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
        monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_pt_0123456789abcdef0123456789abcdef_01")
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_PROJECT", "keel-tests")  # LangSmith caches the project
        ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]

    yield point
    monkeypatch.undo()
    ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]


async def test_tool_arguments_and_errors_reach_langsmith_masked(
    settings_factory: Callable[..., Settings],
    secrets: dict[str, str],
    langsmith_env: Callable[[str], None],
) -> None:
    @tool
    def fetch(url: str, token: str) -> str:
        """Fetch a URL with a token."""
        raise ConnectionRefusedError(f"refused {url} with {token}")

    dsn = f"https://bot:{secrets['url_password']}@api.example/data"

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        if not any(isinstance(m, ToolMessage) for m in messages):
            args = {"url": dsn, "token": secrets["shaped_key"]}
            return AIMessage(content="", tool_calls=[{"name": "fetch", "args": args, "id": "c1"}])
        return "It failed."

    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(
            openai_api_key=secrets["api_key"], limits={"max_tool_attempts": 1}
        )
        async with open_agent(
            settings, model=FunctionModel(fn=fn), tools=ToolRegistry.of([fetch])
        ) as agent:
            assert agent.tracing.enabled
            result = await agent.arun(f"fetch it, my key is {secrets['api_key']}")
        runs = server.runs()
    assert result.success
    tools = [r for r in runs if r.get("run_type") == "tool" and r.get("name") == "fetch"]
    assert tools and MASK in json.dumps(tools[0]["inputs"])
    assert "api.example" in json.dumps(tools[0]["inputs"]), "only the secret is masked"
    assert_clean(json.dumps(runs, default=str), secrets, "the LangSmith payloads")


def test_the_langsmith_key_is_remembered_as_a_secret(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    from keel.observability.redact import redact
    from keel.observability.tracing import Tracing

    with CaptureServer() as server:
        langsmith_env(server.url)
        tracing = Tracing.from_settings(settings_factory())
        key = tracing.client.api_key
        tracing.close()
    assert key and key not in redact(f"the key was {key[:-4]}abcd and {key}")
