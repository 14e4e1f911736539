"""The policy a run started with is the policy it resumes with (issue 16 item 2), and time
spent waiting for a human is not the run's time (issue 18 item 8).

Each "process" is its own `open_agent` over the same SQLite checkpoint file, configured as
a shell would be: the approving one without `KEEL_APPROVAL_TOOLS`.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from keel.config import Settings
from keel.errors import ErrorCode
from keel.runtime import open_agent
from keel.runtime.driver import Segment
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools import default_tools, tool
from keel.tools.registry import ToolRegistry

QUERY = "SELECT COUNT(*) AS n FROM products"


def sql(call_id: str) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": "sql_query", "args": {"query": QUERY}, "id": call_id}]
    )


def tool_messages(values: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in values["messages"] if isinstance(m, ToolMessage)]


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.sqlite'}"


def seen(messages: list[Any]) -> int:
    """Tool results so far: the scripted replies follow the conversation, not the call count
    (each process has its own model object)."""
    return sum(isinstance(m, ToolMessage) for m in messages)


def two_queries(messages: list[Any], info: CallInfo) -> Any:
    """Asks for sql_query twice (two cycles), then answers."""
    if seen(messages) == 0:
        return sql("q1")
    if seen(messages) == 1:
        return sql("q2")
    return "There are some products."


async def test_a_rejection_from_a_process_without_the_approval_does_not_run_the_call(
    settings_factory: Callable[..., Settings], store: str
) -> None:
    started = settings_factory(checkpoint_url=store, approval_tools=["sql_query"])
    async with open_agent(settings=started, model=FunctionModel(fn=two_queries)) as agent:
        paused = await agent.arun("How many products?", thread_id="t")
        assert paused.status == "interrupted"
        assert (await agent.astate("t"))["policy"]["approval"] == ["sql_query"]

    plain = settings_factory(checkpoint_url=store)  # no KEEL_APPROVAL_TOOLS here
    async with open_agent(settings=plain, model=FunctionModel(fn=two_queries)) as agent:
        result = await agent.aapprove("t", reject="not this one")
        values = await agent.astate("t")
    [rejected, *_] = tool_messages(values)
    assert "rejected" in str(rejected.content) and "not this one" in str(rejected.content)
    assert result.metadata.trace[1]["error_code"] == ErrorCode.TOOL_REJECTED
    # the model's second query still needs approval under the run's own policy
    assert result.status == "interrupted"
    assert [p["tool_call_id"] for p in result.metadata.pending] == ["q2"]
    assert len(tool_messages(values)) == 1, "the second query did not run"


async def test_an_approval_from_a_process_without_it_still_pauses_the_next_call(
    settings_factory: Callable[..., Settings], store: str
) -> None:
    started = settings_factory(checkpoint_url=store, approval_tools=["sql_query"])
    async with open_agent(settings=started, model=FunctionModel(fn=two_queries)) as agent:
        assert (await agent.arun("How many products?", thread_id="t")).status == "interrupted"

    plain = settings_factory(checkpoint_url=store)
    async with open_agent(settings=plain, model=FunctionModel(fn=two_queries)) as agent:
        first = await agent.aapprove("t")
        assert first.status == "interrupted", "the fresh call waits for its approval"
        assert [p["tool_call_id"] for p in first.metadata.pending] == ["q2"]
        ran = tool_messages(await agent.astate("t"))
        assert len(ran) == 1 and "n" in str(ran[0].content) and ran[0].status == "success"
        done = await agent.aapprove("t")
    assert done.success and done.status == "finished"


async def test_a_tool_outside_the_runs_tool_set_is_not_run_after_a_resume(
    settings_factory: Callable[..., Settings], store: str
) -> None:
    wiped: list[str] = []

    @tool
    def wipe(table: str) -> str:
        """Delete every row of a table."""
        wiped.append(table)
        return "wiped"

    def reply(messages: list[Any], info: CallInfo) -> Any:
        if seen(messages) == 0:
            return sql("q1")
        if seen(messages) == 1:
            return AIMessage(
                content="", tool_calls=[{"name": "wipe", "args": {"table": "t"}, "id": "w"}]
            )
        return "done"

    started = settings_factory(checkpoint_url=store, approval_tools=["sql_query"])
    async with open_agent(settings=started, model=FunctionModel(fn=reply)) as agent:
        assert (await agent.arun("How many products?", thread_id="t")).status == "interrupted"

    more = ToolRegistry.of([*default_tools(), wipe])
    plain = settings_factory(checkpoint_url=store)
    async with open_agent(settings=plain, model=FunctionModel(fn=reply), tools=more) as agent:
        result = await agent.aapprove("t")
        values = await agent.astate("t")
    assert wiped == [], "the run started without 'wipe': it may not call it"
    codes = [s["error_code"] for s in result.metadata.trace if s["node"] == "act"]
    assert codes == [None, ErrorCode.UNKNOWN_TOOL]
    assert "unknown tool 'wipe'" in str(tool_messages(values)[-1].content)


async def test_time_waiting_for_approval_does_not_count_against_the_deadline(
    settings_factory: Callable[..., Settings], store: str
) -> None:
    settings = settings_factory(
        checkpoint_url=store, approval_tools=["sql_query"], limits={"run_timeout_s": 2.0}
    )

    def once(messages: list[Any], info: CallInfo) -> Any:
        return sql("q1") if seen(messages) == 0 else "There are some products."

    async with open_agent(settings=settings, model=FunctionModel(fn=once)) as agent:
        assert (await agent.arun("How many products?", thread_id="t")).status == "interrupted"
        before = (await agent.astate("t"))["deadline"]
        await asyncio.sleep(2.5)  # the reviewer takes longer than the whole run may
        result = await agent.aapprove("t")
        values = await agent.astate("t")
    [ran] = tool_messages(values)
    assert ran.status == "success" and "timed out" not in str(ran.content)
    assert result.success, result.error
    assert values["deadline"] >= before + 2.4


async def test_a_fork_of_a_checkpoint_older_than_the_run_timeout_is_a_new_run(
    settings_factory: Callable[..., Settings], store: str
) -> None:
    settings = settings_factory(checkpoint_url=store, limits={"run_timeout_s": 2.0})
    async with open_agent(settings=settings) as agent:  # scripted:echo
        first = await agent.arun("red", thread_id="t")
        assert first.success
        start = next(h for h in await agent.ahistory("t") if h.next == ("reason",))
        await asyncio.sleep(2.5)
        forked = await agent.afork("t", start.checkpoint_id)
    assert forked.success and forked.output == "You asked: red", forked.error


async def test_a_run_recorded_before_policies_follows_the_current_settings(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """The 08eff99 checkpoint (no `policy` key) waits for approval of sql_query: a process
    configured with the approval asks for it; one configured without runs the call."""
    fixture = Path(__file__).parents[1] / "fixtures" / "checkpoints_main_08eff99.sqlite"
    for approval, expect in ((["sql_query"], "interrupted"), ([], "finished")):
        copy = tmp_path / f"old-{len(approval)}.sqlite"
        shutil.copy(fixture, copy)
        settings = settings_factory(
            model="scripted:sales", checkpoint_url=f"sqlite:///{copy}", approval_tools=approval
        )
        async with open_agent(settings=settings) as agent:
            assert "policy" not in await agent.astate("approval-pending")
            head = (await agent.ahistory("approval-pending"))[0]
            await agent.afork("approval-pending", head.checkpoint_id, run=False)
            result = await agent.aresume("approval-pending")
        assert result.status == expect, (approval, result.error)
        if expect == "finished":
            assert result.success and "Their total revenue was" in result.output


async def test_a_segment_run_from_an_old_checkpoint_gets_its_own_deadline(
    settings_factory: Callable[..., Settings], store: str
) -> None:
    """How the HTTP API forks (a run with `checkpoint_id` and no input) goes through the
    driver: the same rule as `afork`."""
    settings = settings_factory(checkpoint_url=store, limits={"run_timeout_s": 2.0})
    async with open_agent(settings=settings) as agent:
        first = await agent.arun("red", thread_id="t")
        start = next(h for h in await agent.ahistory("t") if h.next == ("reason",))
        await asyncio.sleep(2.5)
        segment = Segment(
            "t", None, run_id=first.metadata.run_id, checkpoint_id=start.checkpoint_id
        )
        driven = await agent.drive(segment)
    assert driven.result.success and driven.result.output == "You asked: red", driven.result.error


async def test_an_approval_long_after_the_pause_runs_the_call(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """The 08eff99 checkpoint paused for approval long ago, far past its 600 s deadline:
    approving it now runs the call and finishes (no fork needed to give it time)."""
    fixture = Path(__file__).parents[1] / "fixtures" / "checkpoints_main_08eff99.sqlite"
    copy = tmp_path / "old.sqlite"
    shutil.copy(fixture, copy)
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=f"sqlite:///{copy}", approval_tools=["sql_query"]
    )
    async with open_agent(settings=settings) as agent:
        result = await agent.aapprove("approval-pending")
    assert result.success and "Their total revenue was" in result.output, result.error
