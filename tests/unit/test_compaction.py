"""Context compaction: cut tool outputs, trim old ones, summarize the middle, keep the ends."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from keel.config import CompactionSettings
from keel.cost.accounting import estimate_tokens
from keel.nodes import (
    SUMMARY_PREFIX,
    compact_history,
    cut,
    summarize_middle,
    summary_needed,
)
from keel.testing.scripted import FunctionModel

SETTINGS = CompactionSettings(
    max_prompt_tokens=1200, keep_last=2, tool_output_chars=2000, old_tool_output_chars=100
)


def step(i: int, size: int) -> list[BaseMessage]:
    call = AIMessage(
        "", tool_calls=[{"name": "sql_query", "args": {"query": f"SELECT {i}"}, "id": f"c{i}"}]
    )
    return [call, ToolMessage(f"row{i} " + "x" * size, tool_call_id=f"c{i}", name="sql_query")]


def history(steps: int, size: int) -> list[BaseMessage]:
    msgs: list[BaseMessage] = [HumanMessage("Which products sold best?")]
    for i in range(steps):
        msgs += step(i, size)
    return msgs


def test_cut_marks_what_was_dropped() -> None:
    assert cut("short", 10) == "short"
    out = cut("a" * 50, 10)
    assert out.startswith("a" * 10) and "[cut: 40 of 50 characters dropped]" in out


def test_small_history_is_untouched() -> None:
    msgs = history(2, 50)
    assert compact_history(msgs, SETTINGS).messages == msgs


def test_oversized_tool_output_is_always_cut() -> None:
    msgs = history(1, 5000)
    out = compact_history(msgs, SETTINGS.model_copy(update={"max_prompt_tokens": 100_000}))
    tool = out.messages[-1]
    assert isinstance(tool, ToolMessage) and len(str(tool.content)) < 2100
    assert "characters dropped" in str(tool.content)
    assert tool.tool_call_id == "c0"


def test_old_tool_outputs_are_trimmed_first() -> None:
    msgs = history(3, 1500)  # ~1150 tokens of tool output
    out = compact_history(msgs, SETTINGS)
    assert out.middle is None and len(out.messages) == len(msgs)
    contents = [str(m.content) for m in out.messages if isinstance(m, ToolMessage)]
    assert all(len(c) < 200 for c in contents[:-1])  # old ones trimmed
    assert len(contents[-1]) > 1500  # the last turn kept verbatim
    assert estimate_tokens(out.messages) <= SETTINGS.max_prompt_tokens


def test_middle_is_replaced_by_a_digest_keeping_question_and_tail() -> None:
    msgs = history(40, 300)
    out = compact_history(msgs, SETTINGS)
    assert out.middle == (1, len(msgs) - 2)
    assert out.messages[0] is msgs[0]
    note = out.messages[1]
    assert isinstance(note, HumanMessage) and str(note.content).startswith(SUMMARY_PREFIX)
    assert "sql_query" in str(note.content)
    assert out.messages[-2:] == msgs[-2:]
    assert isinstance(out.messages[2], AIMessage)  # the tail never starts with a tool result
    assert estimate_tokens(out.messages) < estimate_tokens(msgs)


async def test_summary_by_the_cheap_model_is_used_once_written() -> None:
    msgs = history(40, 300)
    span = summary_needed(msgs, SETTINGS)
    assert span == (1, len(msgs) - 2)
    seen: list[Any] = []

    def summarizer(messages: list[BaseMessage], info: Any) -> str:
        seen.append(messages)
        return "Queried sales 40 times; best seller is row39."

    text = await summarize_middle(FunctionModel(fn=summarizer).ainvoke, msgs, span)
    assert text == "Queried sales 40 times; best seller is row39."
    assert len(seen) == 1
    assert "Which products sold best?" in str(seen[0][-1].content)
    out = compact_history(msgs, SETTINGS, summary=text, summary_upto=span[1])
    assert str(out.messages[1].content) == SUMMARY_PREFIX + text
    assert summary_needed(msgs, SETTINGS, summary=text, summary_upto=span[1]) is None
    longer = msgs + step(99, 300)
    assert summary_needed(longer, SETTINGS, summary=text, summary_upto=span[1]) is None


def test_summarize_off_uses_the_digest() -> None:
    off = SETTINGS.model_copy(update={"summarize": False})
    assert summary_needed(history(40, 300), off) is None
