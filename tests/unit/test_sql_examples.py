"""Verified question → SQL examples: right by construction, retrieved by likeness, shown to
the planned flow's query step and named in its trace row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from keel import load_settings
from keel.errors import ConfigError
from keel.evals.generalisation import GenQuestion, generate
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.sample_db import build_sample_db
from keel.tools.sample_db_examples import SAMPLE_DB_EXAMPLES, WRITTEN_ON
from keel.tools.sql_examples import (
    SqlExample,
    check_on_database,
    examples_for,
    main,
    mask,
    similar,
)


@pytest.fixture(scope="module")
def written_on_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, GenQuestion]]:
    """The sample database of the day the examples were written, and its questions."""
    db = build_sample_db(tmp_path_factory.mktemp("examples") / "sample.db", today=WRITTEN_ON)
    return db, {q.id: q for q in generate(db)}


def _matches(rows: list[tuple[Any, ...]], question: GenQuestion) -> bool:
    expected = question.expected
    if expected.check == "yes_no":
        return len(rows) == 1 and (rows[0][0] > 0) is expected.yes
    names = [str(row[0]) for row in rows]
    if len(names) < len(expected.names):
        return False
    if not all(name in slot for slot, name in zip(expected.names, names, strict=False)):
        return False
    values = [v for row in rows for v in row if isinstance(v, int | float)]
    return all(any(abs(v - n) <= expected.tolerance for v in values) for n in expected.numbers)


@pytest.mark.parametrize("example", SAMPLE_DB_EXAMPLES, ids=lambda e: e.source)
def test_each_bundled_example_answers_its_tuning_question(
    example: SqlExample, written_on_db: tuple[Path, dict[str, GenQuestion]]
) -> None:
    db, questions = written_on_db
    question = questions[example.source]
    assert question.half == "tuning"  # never written from a held-back question
    assert example.question == question.text
    with sqlite3.connect(db) as conn:
        rows = conn.execute(example.sql).fetchall()
    assert _matches(rows, question), (rows[:5], question.expected)


def test_the_bundled_examples_cover_every_tuning_kind(
    written_on_db: tuple[Path, dict[str, GenQuestion]],
) -> None:
    _, questions = written_on_db
    kinds = {q.kind for q in questions.values() if q.half == "tuning"}
    assert kinds == {questions[e.source].kind for e in SAMPLE_DB_EXAMPLES}


def test_masking_keeps_the_shape_of_a_question_not_its_values() -> None:
    assert mask("How many cancelled orders were there in March 2026?") == mask(
        "How many cancelled orders were there in June 2025?"
    )
    assert mask("What is the cheapest product in the Hardware category?") == mask(
        "What is the cheapest product in the Software category?"
    )
    assert mask("Did 'Printer Basic' sell on 2026-08-21 in US?") == mask(
        "Did 'Laptop Pro' sell on 2025-01-02 in FR?"
    )


@pytest.mark.parametrize(
    ("question", "first"),
    [
        ("How many refunded orders were there in June 2025?", "count.orders_status_month.2"),
        ("What percentage of the orders placed in May 2025 were cancelled?",
         "ratio.pct_status_month.3"),
        ("How many customers from JP have never had a pending order?",
         "negation.never_had_status.3"),
        ("What was the average order value (revenue per completed order) of the orders placed in "
         "June 2025?", "average.avg_order_value_month.1"),
        ("What is 17.5% of 9423?", "arithmetic.percent_of.2"),
    ],
)  # fmt: skip
def test_the_most_similar_example_is_the_same_kind_of_question(question: str, first: str) -> None:
    found = similar(question, SAMPLE_DB_EXAMPLES, k=3)
    assert len(found) == 3 and found[0].source == first


def _write(path: Path, examples: list[dict[str, str]]) -> str:
    path.write_text(json.dumps({"written_on": "2026-12-06", "examples": examples}))
    return str(path)


def test_a_json_file_of_examples_is_loaded_and_checked(tmp_path: Path) -> None:
    good = {"question": "How many orders?", "sql": "SELECT COUNT(*) FROM orders"}
    path = _write(tmp_path / "ok.json", [good])
    loaded = examples_for(load_settings(home=tmp_path, sql={"examples": path}))
    assert [e.question for e in loaded.examples] == ["How many orders?"]
    assert loaded.written_on is not None and loaded.written_on.isoformat() == "2026-12-06"

    bad = _write(tmp_path / "bad.json", [good, {"question": "Drop?", "sql": "DELETE FROM orders"}])
    with pytest.raises(ConfigError, match="'Drop\\?'"):
        examples_for(load_settings(home=tmp_path, sql={"examples": bad}))
    secret = _write(tmp_path / "secret.json", [{"question": "Q", "sql": "SELECT * FROM meta"}])
    with pytest.raises(ConfigError):  # a table the tool may not read
        examples_for(load_settings(home=tmp_path, sql={"examples": secret}))


def test_which_examples_an_agent_has(tmp_path: Path) -> None:
    sample = examples_for(load_settings(home=tmp_path))
    assert sample.examples == SAMPLE_DB_EXAMPLES
    assert not examples_for(load_settings(home=tmp_path, sql={"examples": "off"})).examples
    other = load_settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert not examples_for(other).examples  # the sample's examples fit only the sample


def test_the_check_command_runs_each_example_on_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path))
    wrong = {"question": "Colours?", "sql": "SELECT colour FROM products"}
    fine = {"question": "Orders?", "sql": "SELECT COUNT(*) FROM orders"}
    path = _write(tmp_path / "x.json", [fine, wrong])
    outcomes = check_on_database(
        load_settings(home=tmp_path), examples_for(load_settings(sql={"examples": path}))
    )
    assert [o.split(":")[0] for _, o in outcomes] == ["1 rows", "error"]
    assert main([path]) == 1 and "1 failed" in capsys.readouterr().out
    assert main([]) == 0  # the bundled examples all run on the sample database


QUESTION = "How many customers are from the country DE?"


def _recording(prompts: list[list[BaseMessage]]) -> FunctionModel:
    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        prompts.append(messages)
        return AIMessage("SELECT COUNT(*) AS customers FROM customers WHERE country = 'DE';")

    return FunctionModel(fn=reply)


@pytest.mark.asyncio
async def test_the_query_step_shows_the_closest_examples_and_its_trace_names_them(
    agent_factory: Any,
) -> None:
    prompts: list[list[BaseMessage]] = []
    async with agent_factory(_recording(prompts), compose_answers="always") as agent:
        result = await agent.arun(QUESTION)
    assert result.success
    asked = str(prompts[0][-1].content)
    shown = [e for e in SAMPLE_DB_EXAMPLES if f"Question: {e.question}\n" in asked]
    assert shown == similar(QUESTION, SAMPLE_DB_EXAMPLES)
    assert shown[0].source == "count.customers_country.4"
    assert asked.index(f"SQL: {shown[0].sql}") < asked.index(f"Question: {QUESTION}")
    thought = next(s for s in result.metadata.trace if s["node"] == "reason")["thought"]
    assert f"examples: {', '.join(e.source for e in shown)}" in thought


@pytest.mark.asyncio
async def test_examples_off_leaves_the_query_prompt_without_them(agent_factory: Any) -> None:
    prompts: list[list[BaseMessage]] = []
    async with agent_factory(
        _recording(prompts), compose_answers="always", sql={"examples": "off"}
    ) as agent:
        result = await agent.arun(QUESTION)
    assert result.success
    assert str(prompts[0][-1].content).startswith(f"Question: {QUESTION}")
    thought = next(s for s in result.metadata.trace if s["node"] == "reason")["thought"]
    assert "examples:" not in thought
