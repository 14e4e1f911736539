"""The driver's storage-outage retry sends a run's input again only if the checkpoint does
not have it yet: an outage before the first checkpoint loses no question, one after it
repeats none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from keel.config import Settings
from keel.runtime import open_agent


class FlakySaver(InMemorySaver):
    """Fails its `fail_at`-th checkpoint write as a dropped Postgres connection would."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.puts = fail_at, 0

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        self.puts += 1
        if self.puts == self.fail_at:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await super().aput(*args, **kwargs)


@pytest.mark.parametrize("fail_at", [1, 2, 4])
async def test_an_outage_costs_a_retry_not_the_question(
    settings_factory: Callable[..., Settings], fail_at: int
) -> None:
    saver = FlakySaver(fail_at)
    settings = settings_factory(model="scripted:echo")
    async with open_agent(settings, checkpointer=saver) as agent:
        result = await agent.arun("hello there", thread_id="t")
        values = await agent.astate("t")
    assert saver.puts > fail_at, "the failed write really happened and the run went on"
    assert result.success, result.error
    humans = [m.content for m in values["messages"] if m.type == "human"]
    assert humans == ["hello there"], "the question is in the thread exactly once"


async def test_an_outage_before_a_second_question_is_saved_still_asks_it(
    settings_factory: Callable[..., Settings],
) -> None:
    """The thread already has a finished run: its checkpoint must not be mistaken for the
    new question having been taken in."""
    saver = FlakySaver(fail_at=0)
    settings = settings_factory(model="scripted:echo")
    async with open_agent(settings, checkpointer=saver) as agent:
        first = await agent.arun("first question", thread_id="t")
        saver.fail_at = saver.puts + 1  # the second run's first checkpoint write
        second = await agent.arun("second question", thread_id="t")
        values = await agent.astate("t")
    assert first.success and second.success, second.error
    assert second.metadata.run_id != first.metadata.run_id
    assert second.metadata.model_calls == 1, "the second question was answered, not skipped"
    humans = [m.content for m in values["messages"] if m.type == "human"]
    assert humans == ["first question", "second question"]
