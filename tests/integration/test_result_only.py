"""A run driven for its result streams only the state keys its result reads.

`arun`, `aresume` and `approve` return a `RunResult`, never the state: their segment asks
the graph for `RESULT_KEYS` at each step instead of every key of the state (29 of them).
The result must be the one the stored state gives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from keel.config import Settings
from keel.errors import UsageError
from keel.runtime import driver, open_agent
from keel.runtime.driver import RESULT_KEYS
from keel.types import RunResult
from tests.sales_truth import SALES_QUESTION


def _fields(result: RunResult) -> tuple[Any, ...]:
    metadata = dataclasses.replace(result.metadata, execution_time=0.0)
    return (result.output, result.success, result.status, result.degraded, metadata)


@pytest.mark.asyncio
async def test_a_run_for_its_result_streams_only_the_keys_the_result_reads(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Any] = []
    stream_graph = driver.stream_graph

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("output_keys"))
        return stream_graph(*args, **kwargs)

    monkeypatch.setattr(driver, "stream_graph", recording)
    async with open_agent(settings_factory(model="scripted:sales")) as agent:
        result = await agent.arun(SALES_QUESTION, thread_id="narrow")
        stored = await agent.result("narrow")
    assert asked == [list(RESULT_KEYS)]
    assert result.success and result.metadata.model_calls > 0 and result.metadata.trace
    assert _fields(result) == _fields(stored)


@pytest.mark.asyncio
async def test_a_run_paused_for_a_human_is_reported_and_keeps_its_thread(
    settings_factory: Callable[..., Settings],
) -> None:
    """The narrowed stream still sees the interrupt: the result says the run waits, and a
    new question on its thread is refused until it is answered."""
    settings = settings_factory(model="scripted:sales", approval_tools=["sql_query"])
    async with open_agent(settings) as agent:
        paused = await agent.arun(SALES_QUESTION, thread_id="paused")
        assert paused.status == "interrupted" and not paused.success
        assert paused.metadata.pending and paused.metadata.pending[0]["tool"] == "sql_query"
        with pytest.raises(UsageError, match="unfinished run"):
            await agent.arun(SALES_QUESTION, thread_id="paused")
