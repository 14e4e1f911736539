"""Final answers may only state numbers the run has seen (tool results, question, prompt)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from keel.errors import ErrorCode, MalformedOutputError
from keel.nodes import check_grounded, check_no_unrun_query, ungrounded_numbers

ROWS = '{"rows": [["Laptop Basic", 99625.22], ["Design Suite Pro", 19572.84]]}'


@pytest.mark.parametrize(
    "answer",
    [
        "Laptop Basic earned $99,625.22 and Design Suite Pro $19,572.84.",
        "Laptop Basic earned about 99,625 dollars.",  # rounded to the precision written
        "Laptop Basic: 99625.2",
        "The 3 best products, 2 of them hardware.",  # small whole numbers are prose
        "No numbers at all.",
    ],
)
def test_supported_numbers_pass(answer: str) -> None:
    assert ungrounded_numbers(answer, [ROWS]) == []


@pytest.mark.parametrize(
    ("answer", "missing"),
    [
        ("Their total revenue was 28,048.22.", ["28,048.22"]),
        ("Laptop Basic earned 99,625.22, in all 119,198.06.", ["119,198.06"]),
        ("Revenue was 99,626.", ["99,626"]),  # off by more than the written precision
        ("Up 12.5% and 12.5% again", ["12.5"]),  # reported once
        ("Sold 163 units", ["163"]),
    ],
)
def test_unsupported_numbers_are_named(answer: str, missing: list[str]) -> None:
    assert ungrounded_numbers(answer, [ROWS]) == missing


def test_sources_are_tool_results_questions_and_the_system_prompt() -> None:
    messages = [
        HumanMessage("Revenue since 2025?"),
        AIMessage("", tool_calls=[{"name": "calculator", "args": {"x": 777.5}, "id": "c1"}]),
        ToolMessage("119198.06", tool_call_id="c1"),
    ]
    check_grounded("Since 2025: 119,198.06 (today is 2026-11-26)", messages, "Today 2026-11-26")
    with pytest.raises(MalformedOutputError) as info:
        check_grounded("It was 777.5", messages, "")  # only in the model's own tool call
    assert info.value.code == ErrorCode.UNGROUNDED_ANSWER
    assert "777.5" in info.value.message and "calculator" in info.value.message


TOOLS = ["sql_query", "calculator"]
QUOTED = "You can use:\n```sql\nSELECT COUNT(*) FROM orders WHERE status = 'completed';\n```"


def test_an_answer_quoting_a_query_instead_of_running_it_is_rejected() -> None:
    with pytest.raises(MalformedOutputError) as info:
        check_no_unrun_query(QUOTED, "How many completed orders?", TOOLS)
    assert "sql_query" in info.value.message


@pytest.mark.parametrize(
    ("answer", "question", "tools"),
    [
        ("There were 163 completed orders.", "How many completed orders?", TOOLS),
        (QUOTED, "Which SQL query counts completed orders?", TOOLS),  # asked for SQL
        (QUOTED, "How many completed orders?", ["calculator"]),  # nothing could run it
        ("Select the largest one from the list: 12.", "Which is largest?", TOOLS),
    ],
)
def test_answers_that_may_mention_queries(answer: str, question: str, tools: list[str]) -> None:
    check_no_unrun_query(answer, question, tools)
