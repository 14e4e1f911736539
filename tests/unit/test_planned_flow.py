"""The planned flow for data questions: one checked query, then an answer checked against it.

Unit tests of the query check and the verifier, and runs of the built-in data assistant (the
sample database, `sql_query` + calculator) with scripted models in place of the local one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from keel import load_settings
from keel.errors import MalformedOutputError
from keel.nodes import (
    QUERY_GRAMMAR,
    YES_NO_GRAMMAR,
    answer_from_rows,
    check_query,
    read_table,
    schema_from_prompt,
    verify_answer,
)
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.sql_context import describe_database

SCHEMA = schema_from_prompt(
    "The sql_query tool reads a SQLite database. Tables:\n"
    "- customers(id, name, email, country, created_at)\n"
    "- orders(id, customer_id, order_date, status)\n"
    "- products(id, name, category, unit_price)\n"
    "Order dates are 'YYYY-MM-DD' text."
)


def test_the_schema_is_read_from_the_prompt_the_model_sees(tmp_path: Path) -> None:
    prompt = describe_database(load_settings(home=tmp_path))
    schema = schema_from_prompt(prompt)
    assert schema.tables["orders"] == ("id", "customer_id", "order_date", "status")
    assert set(schema.tables) == {"customers", "orders", "order_items", "products"}


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (
            "SELECT COUNT(*) FROM customers WHERE country = 'CA' AND order_date >= '2026-07-01'",
            "'order_date' is a column of orders, not of customers: join orders",
        ),
        (
            "SELECT c.country FROM customers AS c JOIN products AS p ON c.id = p.customer_id",
            "'customer_id' is a column of orders, not of customers, products: join orders",
        ),
        (
            "SELECT id FROM customers c JOIN orders o ON o.customer_id = c.id",
            "'id' is in several tables of the query (customers, orders)",
        ),
        ("SELECT name FROM clients", "there is no table 'clients'"),
        ("SELECT colour FROM products", "no table has a column 'colour'"),
        ("SELECT 1; SELECT 2", "exactly one SELECT"),
        ("DELETE FROM orders", "exactly one SELECT"),
        ("SELECT FROM WHERE (", "not valid SQL"),
        ("", "no query"),
    ],
)
def test_a_query_that_does_not_fit_the_schema_is_refused(query: str, says: str) -> None:
    with pytest.raises(MalformedOutputError) as info:
        check_query(query, SCHEMA)
    assert says in info.value.message


NOTES = schema_from_prompt(
    "Tables:\n- orders(id, customer_id, order_date, status)\n"
    "Revenue counts only completed orders: the items of orders with status = 'completed'."
    " For example, units in March: SELECT … WHERE status = 'completed'"
)


@pytest.mark.parametrize(
    ("question", "accepted"),
    [
        ("How many orders were placed last month, whatever their status?", False),
        ("How many customers ordered in May 2026?", False),  # "For example" is no rule
        ("What was the revenue in May 2026?", True),  # the rule's subject: revenue
        ("How many completed orders were there?", True),  # named by the question
        ("How many orders were not Completed?", True),
    ],
)
def test_the_query_compares_only_with_values_the_question_brings(
    question: str, accepted: bool
) -> None:
    query = "SELECT COUNT(*) FROM orders WHERE status = 'completed' AND order_date >= '2026-05-01'"
    if accepted:
        assert check_query(query, NOTES, question).startswith("SELECT COUNT(*)")
    else:
        with pytest.raises(MalformedOutputError, match="'completed', which the question does"):
            check_query(query, NOTES, question)


LISTED = schema_from_prompt(
    "Tables:\n- orders(id, customer_id, order_date, status)\n- products(id, name)\n"
    "Order dates are text; orders.status is one of completed, pending, cancelled, refunded."
)


@pytest.mark.parametrize(
    ("question", "query", "missing"),
    [
        (
            "How many completed orders were there in May 2026?",
            "SELECT COUNT(*) FROM orders",
            "completed",
        ),
        (
            "How many orders were not completed?",
            "SELECT COUNT(*) FROM orders WHERE status != 'completed'",
            None,
        ),
        ("Units of 'Setup Service' in May?", "SELECT COUNT(*) FROM orders", "Setup Service"),
        (
            "Units of 'Setup Service' in May?",
            "SELECT COUNT(*) FROM products WHERE name = 'Setup Service'",
            None,
        ),
        ("How many orders, whatever their status?", "SELECT COUNT(*) FROM orders", None),
        (
            "Any refunded or cancelled orders?",
            "SELECT COUNT(*) FROM orders WHERE status = 'refunded'",
            "cancelled",
        ),
    ],
)
def test_the_query_uses_every_value_the_question_names(
    question: str, query: str, missing: str | None
) -> None:
    if missing is None:
        assert check_query(query, LISTED, question).startswith("SELECT")
    else:
        with pytest.raises(MalformedOutputError, match=f"names '{missing}', and the query does"):
            check_query(query, LISTED, question)


BR_ES = "Do we have more customers from BR than from ES?"
MAY_APRIL = "Was the revenue in May 2026 higher than in April 2026?"


@pytest.mark.parametrize(
    ("question", "query", "accepted"),
    [
        (BR_ES, "SELECT COUNT(*) FROM customers WHERE country = 'BR' OR country = 'ES'", False),
        (BR_ES, "SELECT SUM(country = 'BR') > SUM(country = 'ES') FROM customers", True),
        (
            MAY_APRIL,
            "SELECT COUNT(*) FROM orders WHERE order_date >= '2026-05-01'"
            " AND order_date < '2026-06-01'",
            False,  # date bounds are no comparison of the two amounts
        ),
        (
            MAY_APRIL,
            "SELECT (SELECT COUNT(*) FROM orders WHERE order_date >= '2026-05-01') >"
            " (SELECT COUNT(*) FROM orders WHERE order_date >= '2026-04-01')",
            True,
        ),
        ("Were fewer than 30 orders placed in May 2026?", "SELECT COUNT(*) FROM orders", False),
        ("Customers in BR?", "SELECT COUNT(*) FROM customers WHERE country='BR'", True),
    ],
)  # fmt: skip
def test_a_yes_no_comparison_gets_a_query_that_compares(
    question: str, query: str, accepted: bool
) -> None:
    if accepted:
        assert check_query(query, SCHEMA, question).startswith("SELECT")
    else:
        with pytest.raises(MalformedOutputError, match="selects no comparison"):
            check_query(query, SCHEMA, question)
    assert check_query(query, SCHEMA, question, strict=False).startswith("SELECT")


def test_an_accepted_query_divides_as_real_numbers() -> None:
    checked = check_query("```sql\nSELECT COUNT(*) / 4 FROM orders o;\n```", SCHEMA)
    assert checked == "SELECT CAST(COUNT(*) AS REAL) / 4 FROM orders AS o"
    assert check_query("SELECT CAST(68945 / 4 AS INT)", SCHEMA) == "SELECT CAST(68945 AS REAL) / 4"
    with_cte = "WITH x AS (SELECT status FROM orders) SELECT status FROM x"
    assert check_query(with_cte, SCHEMA).startswith("WITH x AS")


TOP = read_table(
    '{"columns": ["name", "revenue"], "rows": [["Laptop", 1200.456], ["Tablet 2", 800.0]],'
    ' "row_count": 2, "truncated": false}'
)
COUNT = read_table('{"columns": ["n"], "rows": [[3]], "row_count": 1, "truncated": false}')
NONE = read_table('{"columns": ["n"], "rows": [[0]], "row_count": 1, "truncated": false}')


@pytest.mark.parametrize(
    ("answer", "question", "table", "problem"),
    [
        ("Laptop (1,200.46) and Tablet 2 (800).", "Which 2 products sold most?", TOP, None),
        ("Laptop and Tablet 2: 2,000.46 in total.", "Which 2, and their total?", TOP, None),
        ("There are 3.", "How many orders?", COUNT, None),
        ("Yes, 3 of them.", "Did any order fail?", COUNT, None),
        ("No, there were none.", "Did any order fail?", NONE, None),
        ("There are 4.", "How many orders?", COUNT, "states 4, which is not in the result"),
        ("There are several.", "How many orders?", COUNT, "leaves out the result's 3"),
        ("Laptop sold most.", "Which 2 products sold most?", TOP, "leaves out 'Tablet 2'"),
        ("Laptop and Tablet 2.", "Which 2, and their total?", TOP, "asks for a total"),
        ("No, none failed.", "Did any order fail?", COUNT, "says no, the result says otherwise"),
        ("There were 3.", "Did any order fail?", COUNT, "does not start with yes or no"),
        ("Laptop 1200.46, Tablet 2 800, total 2200", "Which 2, and their total?", TOP, "2200"),
    ],
)
def test_the_verifier_holds_an_answer_to_the_rows(
    answer: str, question: str, table: Any, problem: str | None
) -> None:
    found = verify_answer(answer, question, table)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("question", "table", "answer"),
    [
        ("Which 2 products sold most?", TOP, "Laptop (1200.46); Tablet 2 (800)."),
        ("Which 2, and their total?", TOP,
         "Laptop (1200.46); Tablet 2 (800). Total: 2000.46 (revenue)."),
        ("How many orders?", COUNT, "3."),
        ("Did any order fail?", COUNT, "Yes (the query counts 3)."),
        ("Was any order refunded?", NONE, "No (the query counts 0)."),
    ],
)  # fmt: skip
def test_the_answer_from_the_rows_states_them(question: str, table: Any, answer: str) -> None:
    assert answer_from_rows(question, table) == answer
    assert verify_answer(answer, question, table) is None


QUESTION = "How many customers are from the country CA?"


def _planned_model(queries: list[str], answer: str) -> tuple[FunctionModel, list[CallInfo]]:
    """Writes `queries` in turn for query prompts, `answer` for the answer prompt."""
    seen: list[CallInfo] = []
    written = iter(queries)

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        seen.append(info)
        assert not info.tools  # the plan binds no tools: its replies are a query or an answer
        assert isinstance(messages[0], SystemMessage)  # the same opening for both calls
        assert "Tables:" in str(messages[0].content)
        if "The query returned:" in str(messages[-1].content):
            return AIMessage(answer)
        return AIMessage(next(written))

    return FunctionModel(fn=reply), seen


def _reason_rows(result: Any) -> list[dict[str, Any]]:
    return [s for s in result.metadata.trace if s["node"] == "reason"]


@pytest.mark.asyncio
async def test_a_single_value_is_answered_from_the_rows(agent_factory: Any) -> None:
    query = "SELECT COUNT(*) AS customers FROM customers WHERE country = 'CA';"
    model, seen = _planned_model([query], "There are 1000 customers from CA.")
    async with agent_factory(model, compose_answers="always") as agent:
        result = await agent.arun(QUESTION)
    assert result.success
    rows = _reason_rows(result)
    assert [s["signal"] for s in rows] == ["tools", "answer"]
    assert rows[0]["action"] == "sql_query"
    assert rows[0]["action_input"] == {
        "query": "SELECT COUNT(*) AS customers FROM customers WHERE country = 'CA'"
    }
    observed = next(s for s in result.metadata.trace if s["node"] == "act")["observation"]
    count = json.loads(observed)["rows"][0][0]
    assert result.output == f"{count}."
    assert "no model call" in rows[1]["thought"] and len(seen) == 1
    steps = [s["node"] for s in result.metadata.trace if s["node"] != "observe"]
    assert steps == ["reason", "act", "reason", "finish"]


@pytest.mark.asyncio
async def test_a_yes_no_count_is_answered_from_the_rows(agent_factory: Any) -> None:
    query = "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'"
    model, seen = _planned_model([query], "No, there are no cancelled orders.")
    async with agent_factory(model, compose_answers="always") as agent:
        result = await agent.arun("Are there any cancelled orders?")
    assert result.success and len(seen) == 1
    assert result.output.startswith("Yes (the query counts ")


CHEAPEST = "SELECT name, unit_price FROM products ORDER BY unit_price LIMIT 2"


def _listed(messages: list[BaseMessage]) -> list[str]:
    """The product names of the rows the answer prompt shows ('1. name | price')."""
    shown = str(messages[-1].content).splitlines()
    return [line.split(". ", 1)[1].split(" | ")[0] for line in shown if line[:1].isdigit()]


@pytest.mark.asyncio
async def test_an_answer_that_states_the_rows_is_kept(agent_factory: Any) -> None:
    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        if "The query returned:" in str(messages[-1].content):
            return AIMessage(f"The cheapest are {' and '.join(_listed(messages))}.")
        return AIMessage(CHEAPEST)

    async with agent_factory(FunctionModel(fn=reply), compose_answers="always") as agent:
        result = await agent.arun("Which 2 products are the cheapest?")
    assert result.success and result.output.startswith("The cheapest are ")
    assert "verified against the 2 result rows" in _reason_rows(result)[1]["thought"]


@pytest.mark.asyncio
async def test_a_contradicting_answer_is_replaced_by_the_rows(agent_factory: Any) -> None:
    names: list[str] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        if "The query returned:" in str(messages[-1].content):
            names.extend(_listed(messages))
            return AIMessage(f"Only {names[0]} is cheap; it costs 123456.78.")
        return AIMessage(CHEAPEST)

    async with agent_factory(FunctionModel(fn=reply), compose_answers="always") as agent:
        result = await agent.arun("Which 2 products are the cheapest?")
    assert result.success
    assert result.output.startswith(f"{names[0]} (") and f"; {names[1]} (" in result.output
    thought = _reason_rows(result)[1]["thought"]
    assert "verifier rejected" in thought and "123456.78" in thought


@pytest.mark.asyncio
async def test_a_query_off_the_schema_gets_one_repair_turn(agent_factory: Any) -> None:
    bad = "SELECT COUNT(*) FROM customers WHERE order_date >= '2026-01-01'"
    good = "SELECT COUNT(*) FROM orders WHERE order_date >= '2026-01-01'"
    prompts: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        prompts.append(messages)
        if "The query returned:" in str(messages[-1].content):
            return AIMessage("Yes.")
        return AIMessage(bad if len(prompts) == 1 else good)

    async with agent_factory(FunctionModel(fn=reply), compose_answers="always") as agent:
        result = await agent.arun("Were there orders this year?")
    assert result.success and result.output.startswith("Yes")
    signals = [s["signal"] for s in _reason_rows(result)]
    assert signals == ["repair", "tools", "answer"]
    repair = prompts[1]
    assert isinstance(repair[-1], HumanMessage)
    assert "'order_date' is a column of orders" in str(repair[-1].content)
    assert str(repair[-2].content) == bad
    act = [s for s in result.metadata.trace if s["node"] == "act"]
    assert [s["action_input"]["query"] for s in act] == [good]  # the bad one never ran


@pytest.mark.asyncio
async def test_a_refused_query_goes_back_with_the_error(agent_factory: Any) -> None:
    broken = "SELECT COUNT(*) FROM orders WHERE COUNT(*) > 0"  # SQLite: misuse of aggregate
    model, _ = _planned_model([broken, "SELECT COUNT(*) FROM orders"], "Yes.")
    async with agent_factory(model, compose_answers="always") as agent:
        result = await agent.arun("Do we have orders?")
    act = [s for s in result.metadata.trace if s["node"] == "act"]
    assert act[0]["error_code"] is not None
    assert len(act) == 2 and act[1]["error_code"] is None
    assert result.success and result.output.startswith("Yes")


@pytest.mark.asyncio
async def test_the_local_server_gets_grammars(settings_factory: Any) -> None:
    from keel.runtime import open_agent

    query = "SELECT id FROM orders WHERE status = 'refunded' LIMIT 3"
    model, seen = _planned_model([query], "Yes, some were.")
    settings = settings_factory(model="local:qwen2.5-coder-0.5b")  # compose auto: on
    async with open_agent(settings, model=model) as agent:
        result = await agent.arun("Were any orders refunded?")
    assert result.success
    grammars = [info.kwargs.get("extra_body", {}).get("grammar") for info in seen]
    assert grammars == [QUERY_GRAMMAR, YES_NO_GRAMMAR]


@pytest.mark.asyncio
async def test_other_agents_and_hosted_models_keep_the_free_loop(agent_factory: Any) -> None:
    calls: list[CallInfo] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        calls.append(info)
        return AIMessage("Hello.")

    async with agent_factory(FunctionModel(fn=reply)) as agent:  # compose auto, scripted:
        result = await agent.arun("Hi")
    assert result.output == "Hello." and calls[0].tools == ["sql_query", "calculator"]


@pytest.mark.asyncio
async def test_planned_queries_never_keeps_the_free_loop(agent_factory: Any) -> None:
    calls: list[CallInfo] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        calls.append(info)
        return AIMessage("Hello.")

    async with agent_factory(
        FunctionModel(fn=reply), compose_answers="always", planned_queries="never"
    ) as agent:
        result = await agent.arun("Do we have orders?")
    assert result.output == "Hello." and calls[0].tools == ["sql_query", "calculator"]
    assert not calls[0].kwargs.get("extra_body")


@pytest.mark.asyncio
async def test_the_last_try_runs_a_valid_query_the_checks_refused(agent_factory: Any) -> None:
    # 'shipped' is not in the question: the value check refuses it, twice; with no repair
    # left the query runs (the database decides) instead of the run degrading.
    query = "SELECT COUNT(*) AS orders FROM orders WHERE status = 'shipped'"
    model, _ = _planned_model([query] * 3, "unused")
    async with agent_factory(model, compose_answers="always", max_repairs=2) as agent:
        result = await agent.arun("How many orders are there?")
    signals = [s["signal"] for s in _reason_rows(result)]
    assert signals[:3] == ["repair", "repair", "tools"]
    act = [s for s in result.metadata.trace if s["node"] == "act"]
    assert [s["action_input"]["query"] for s in act] == [query]
    assert result.success and not result.degraded


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("written", "answer"),
    [
        ("SELECT 2 ** 14 AS result;", "16384."),  # not SQL: the database would refuse it
        ("SELECT 2^14", "16384."),
        ("SELECT ROUND(SQRT(1764), 2) AS root", "42."),
        ("SELECT 9423 * 17.5 / 100 AS result", "1649.03."),
    ],
)
async def test_a_query_that_reads_no_table_is_computed_by_the_calculator(
    agent_factory: Any, written: str, answer: str
) -> None:
    model, seen = _planned_model([written], "unused")
    async with agent_factory(model, compose_answers="always") as agent:
        result = await agent.arun("What is the answer to this sum?")
    assert result.success and result.output == answer and len(seen) == 1
    act = [s for s in result.metadata.trace if s["node"] == "act"]
    assert [s["action"] for s in act] == ["calculator"]
    assert "computed by the calculator" in _reason_rows(result)[0]["thought"]


SHOP = schema_from_prompt(
    "Tables:\n- customers(id, name, email, country, created_at)\n"
    "- orders(id, customer_id, order_date, status)\n"
    "- order_items(id, order_id, product_id, quantity, unit_price)\n"
    "- products(id, name, category, unit_price)\n"
)


@pytest.mark.parametrize(
    ("query", "joined"),
    [
        (
            "SELECT c.country FROM customers AS c JOIN orders AS o ON c.id = o.customer_id "
            "GROUP BY c.country ORDER BY SUM(oi.quantity * oi.unit_price) DESC LIMIT 1",
            "JOIN order_items AS oi ON oi.order_id = o.id",
        ),
        (
            "SELECT p.name FROM order_items AS oi GROUP BY p.name ORDER BY SUM(oi.quantity) DESC",
            "JOIN products AS p ON oi.product_id = p.id",
        ),
        (
            "SELECT SUM(order_items.quantity) FROM orders WHERE status = 'x'",
            "JOIN order_items ON order_items.order_id = orders.id",
        ),
    ],
)
def test_a_table_used_but_never_joined_is_joined_along_its_foreign_key(
    query: str, joined: str
) -> None:
    assert joined in check_query(query, SHOP)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        # `x` names no table; `name` of customers and products, `oi` has no colour
        ("SELECT x.name FROM order_items AS oi", "'name' is a column of customers and products"),
        ("SELECT oi.colour FROM orders AS o", "no table has a column 'colour'"),
        # customers and order_items share no foreign key: nothing to join along
        ("SELECT SUM(oi.quantity) FROM customers AS c", "'quantity' is a column of order_items"),
    ],
)
def test_a_join_that_is_not_certain_is_left_to_the_schema_check(query: str, says: str) -> None:
    with pytest.raises(MalformedOutputError) as info:
        check_query(query, SHOP)
    assert says in info.value.message


def test_a_correlated_subquery_keeps_its_outer_table() -> None:
    """`o` inside the subquery is the outer query's orders, not a table to join there."""
    query = (
        "SELECT COUNT(*) FROM orders AS o WHERE EXISTS "
        "(SELECT 1 FROM order_items AS oi WHERE oi.order_id = o.id AND oi.quantity > 2)"
    )
    assert check_query(query, SHOP).count("JOIN") == 0
