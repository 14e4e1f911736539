"""Structured logs of real runs: one JSON event per step, run context bound, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from langchain_core.messages import AIMessage

from keel.config import Settings
from keel.errors import ModelCallError
from keel.observability.logs import configure_logging, get_logger, keel_logger
from keel.runtime import open_agent
from keel.testing.scripted import ScriptedModel
from keel.tools.registry import ToolRegistry, tool

PLANTED = "sk-live-PLANTED0123456789abcdefXYZ"
BEARER = "Bearer tok_PLANTED_0123456789"


@pytest.fixture
def capture() -> Iterator[Callable[..., io.StringIO]]:
    """Configure logging into a buffer; restore structlog and the root logger afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def configure(settings: Any) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(settings, stream=buffer)
        return buffer

    yield configure
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def add_call() -> AIMessage:
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}
    return AIMessage(content="", tool_calls=[call])


@pytest.fixture
def registry() -> ToolRegistry:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return ToolRegistry.of([add])


async def test_one_json_event_per_step_with_the_run_bound(
    capture: Callable[..., io.StringIO],
    settings_factory: Callable[..., Settings],
    registry: ToolRegistry,
) -> None:
    settings = settings_factory(observability={"log_format": "auto"})
    buffer = capture(settings)  # a StringIO is no terminal: JSON
    model = ScriptedModel([ModelCallError("503 busy"), add_call(), "It is 5."])
    async with open_agent(settings, model=model, tools=registry) as agent:
        result = await agent.arun("What is 2+3?", thread_id="t-logs", tenant="acme")
    assert result.success
    events = lines(buffer)
    names = [e["event"] for e in events]
    assert names == [
        "run.start",
        "model.call",  # failed attempt
        "model.retry",
        "model.call",
        "tool.call",
        "model.call",
        "run.end",
    ], names
    run_id = result.metadata.run_id
    for e in events:
        assert list(e)[:3] == ["ts", "level", "event"]
        assert (e["run_id"], e["thread_id"], e["tenant"]) == (run_id, "t-logs", "acme")
    failed, retry, called, tool_call, answered, end = events[1:]
    assert failed["outcome"] == "error" and failed["error_code"] == "model_error"
    assert failed["level"] == "warning"
    assert retry["attempt"] == 1 and retry["node"] == "reason"
    assert called["outcome"] == "ok" and called["action"] == "add" and called["tokens"] > 0
    assert {"node", "attempt", "ms", "tokens", "cost", "model"} <= set(called)
    assert tool_call["tool"] == "add" and tool_call["node"] == "act" and tool_call["ms"] >= 0
    assert answered["signal"] == "answer"
    assert end["status"] == "success" and end["iterations"] == 2
    assert end["tokens"] == result.metadata.total_tokens
    assert end["latency_ms"] > 0


async def test_degrade_and_fallback_are_logged_as_warnings(
    capture: Callable[..., io.StringIO], settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(observability={"log_format": "json"})
    buffer = capture(settings)
    model = ScriptedModel([ModelCallError("model not found", kind="degradable")])
    async with open_agent(settings, model=model) as agent:
        result = await agent.arun("hello")
    assert not result.success
    by_name = {e["event"]: e for e in lines(buffer)}
    assert by_name["run.degrade"]["level"] == "warning"
    assert by_name["run.fallback"]["error_code"] == result.error_code
    assert by_name["run.end"]["status"] == "failed"


async def test_a_planted_key_never_reaches_a_log_line(
    capture: Callable[..., io.StringIO], settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(
        openai_api_key=PLANTED,
        observability={"log_format": "json", "redact_patterns": [r"ACME-\d{6}"]},
    )
    buffer = capture(settings)
    failure = ModelCallError(
        f"401 invalid key {PLANTED} ({BEARER}) for customer ACME-123456", kind="degradable"
    )
    async with open_agent(settings, model=ScriptedModel([failure])) as agent:
        result = await agent.arun("hello")
    assert PLANTED not in (result.error or "") and "[REDACTED]" in (result.error or "")
    get_logger().info("debug.dump", openai_api_key=PLANTED, headers={"Authorization": BEARER})
    logging.getLogger("httpx").warning("retrying with Authorization: %s", BEARER)
    try:
        raise RuntimeError(f"boom {PLANTED}")
    except RuntimeError:
        get_logger().exception("crash")
    text = buffer.getvalue()
    assert "run.end" in text and "crash" in text and "retrying with" in text
    for secret in (PLANTED, "tok_PLANTED_0123456789", "ACME-123456", "PLANTED0123"):
        assert secret not in text
    assert text.count("[REDACTED]") >= 5


def test_pretty_format_for_terminals(
    capture: Callable[..., io.StringIO], settings_factory: Callable[..., Settings]
) -> None:
    buffer = capture(settings_factory(observability={"log_format": "pretty"}))
    get_logger().info("run.start", model="scripted:echo", api_key=PLANTED)
    text = buffer.getvalue()
    assert "run.start" in text and "model=scripted:echo" in text
    assert PLANTED not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_level_filter_drops_debug(
    capture: Callable[..., io.StringIO], settings_factory: Callable[..., Settings]
) -> None:
    buffer = capture(settings_factory(observability={"log_format": "json", "log_level": "info"}))
    get_logger().debug("node.step")
    get_logger().info("kept")
    assert [e["event"] for e in lines(buffer)] == ["kept"]


def test_the_assembled_logger_follows_a_new_configuration(
    capture: Callable[..., io.StringIO], settings_factory: Callable[..., Settings]
) -> None:
    """`keel_logger` is reused while structlog's configuration stands, and assembled again
    (new stream, new level, a test's capture) as soon as it changes."""
    first = capture(settings_factory(observability={"log_format": "json", "log_level": "info"}))
    keel_logger().info("one")
    assert keel_logger() is keel_logger()
    second = capture(settings_factory(observability={"log_format": "json", "log_level": "warning"}))
    keel_logger().info("dropped")
    keel_logger().warning("two")
    with structlog.testing.capture_logs() as captured:
        keel_logger().warning("three")
    keel_logger().warning("four")
    assert [e["event"] for e in lines(first)] == ["one"]
    assert [e["event"] for e in lines(second)] == ["two", "four"]
    assert [e["event"] for e in captured] == ["three"]
