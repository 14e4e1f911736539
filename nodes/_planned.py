"""The planned flow for data questions: one checked query, then an answer checked against it.

The 0.5B local model in a free tool loop misreads rows, loops on broken SQL and writes tool
calls the server cannot parse. For an agent whose tools are `sql_query` (and the calculator)
on a model whose answers are composed (`compose_answers`: `auto` means `local:` models), the
`reason` step instead follows a fixed plan, still through the five nodes and visible in the
trace:

1. `reason` (stage `query`): the model writes ONE SQL query from a short prompt (schema,
   today's date, the bounds of the dates the question names, and the verified question →
   SQL examples most like the question, `keel.tools.sql_examples`, which the trace row
   names). On a `local:` model the
   server's grammar constrains the reply to a single `SELECT …;`/`WITH …;` statement, so
   the call cannot be malformed. The query is checked against the schema
   (`_planned_sql.check_query`); a refusal is a malformed reply, so the graph's repair edge
   gives the model one more turn with the refusal.
2. `act` runs it as a `sql_query` call; `observe` closes the cycle. A query that reads no
   table (`SELECT (593 + 8114) * 15`) is arithmetic: `act` runs its expression as a
   `calculator` call instead, which also reads what SQL does not (`2 ** 14`, `2^14`), and its
   result is the answer. A query the database
   refuses goes back to stage `query` with the error; after `MAX_FAILED_RUNS` refusals the
   plan steps aside and the ordinary tool loop takes over.
3. `reason` (stage `answer`): the model writes the answer from the rows alone (no tools; on
   a `local:` model a yes/no question's answer is constrained to start with Yes or No), and
   `_planned_verify.verify_answer` checks it states the rows; when it does not, the answer
   is written from the rows (`answer_from_rows`). The trace row says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.runnables import Runnable

from keel.nodes._interpret import Decision, call_id
from keel.nodes._model_gate import GatedReply, ModelRequest
from keel.nodes._planned_sql import (
    arithmetic_of,
    check_query,
    date_hints,
    schema_from_prompt,
    strip_query,
)
from keel.nodes._planned_verify import (
    Table,
    answer_from_rows,
    asks_for_total,
    column_totals,
    format_value,
    is_yes_no,
    read_table,
    verify_answer,
)
from keel.nodes._records import NO_USAGE, question_start, text_of
from keel.nodes.context import AgentContext
from keel.tools.sql_context import date_context
from keel.tools.sql_examples import SqlExample, examples_for, similar
from keel.types import AgentState

__all__ = [
    "MAX_FAILED_RUNS",
    "Stage",
    "answers_from_rows",
    "planned_decision",
    "planned_request",
    "planned_stage",
    "rows_reply",
]

MAX_FAILED_RUNS = 2
"""Queries the database may refuse before the plan steps aside for the free tool loop."""
SHOWN_ROWS = 20
"""Rows of a result shown to the model when it writes the answer."""

QUERY_REQUEST = (
    "Write one SQL SELECT query whose result answers the question. Select only what the "
    "question asks for, with readable column names, and only the conditions the question "
    "states. For a yes/no question, "
    "select one number that is above 0 for yes and 0 for no (a COUNT, or a comparison)."
)
EXAMPLES_INTRO = "Checked examples of questions and their SQL on this database:"
QUERY_GRAMMAR = r'root ::= ("SELECT " | "WITH ") [^;`]+ ";"?'
"""GBNF for the `local:` server: one statement, no prose, no code fence."""
QUERY_MAX_TOKENS = 300

ANSWER_REQUEST = (
    "Answer the question in one sentence, using only names and numbers from this result, "
    "exactly as written there."
)
ANSWER_GRAMMAR = r"root ::= [^\n]+"
YES_NO_GRAMMAR = r'root ::= ("Yes" | "No") [^\n]*'
ANSWER_MAX_TOKENS = 120


@dataclass(frozen=True)
class Stage:
    """Where the plan stands for the current question."""

    kind: Literal["query", "answer"]
    question: str
    query: str = ""
    """Stage `answer`: the query that ran."""
    table: Table | None = None
    """Stage `answer`: its result."""
    refused: list[tuple[str, str]] = field(default_factory=list)
    """Stage `query`: the (query, error) of each run the database refused."""


def planned_stage(state: AgentState, ctx: AgentContext) -> Stage | None:
    """The plan's stage for this `reason` step of an agent that uses the plan (which
    `_plan_gate.planned_stage`, the only caller, checks first), or None when the free loop
    is in charge."""
    question = state.get("question", "")
    messages = list(state.get("messages", []))
    start = question_start(messages, question)
    queries: dict[str, str] = {}
    refused: list[tuple[str, str]] = []
    answer: Stage | None = None
    for message in messages[start:]:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                args = call["args"]
                queries[call.get("id") or ""] = str(args.get("query", args.get("expression", "")))
        elif isinstance(message, ToolMessage):
            arithmetic = message.name == "calculator" and len(refused) < MAX_FAILED_RUNS
            if message.name not in (None, "sql_query") and not arithmetic:
                return None  # the free loop used another tool: it stays in charge
            query = queries.get(message.tool_call_id, "")
            if arithmetic and message.status != "error":
                value = _number(text_of(message.content))
                if value is None:
                    return None
                answer = Stage("answer", question, query=query, table=Table(["result"], [[value]]))
                continue
            if message.status == "error":
                refused.append((query, text_of(message.content)))
                answer = None
                continue
            table = read_table(text_of(message.content))
            if table is None:
                return None
            answer = Stage("answer", question, query=query, table=table)
    if answer is not None:
        return answer
    if len(refused) >= MAX_FAILED_RUNS:
        return None
    return Stage("query", question, refused=refused)


def _number(text: str) -> int | float | None:
    """The calculator's result as a number (None: not one)."""
    try:
        value = float(text.strip().replace(",", ""))
    except ValueError:
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _today(ctx: AgentContext) -> date:
    return date.fromtimestamp(ctx.clock())


def _bound(ctx: AgentContext, grammar: str, max_tokens: int) -> Runnable[LanguageModelInput, Any]:
    """`ctx`'s model, constrained by `grammar` when it is the embedded llama.cpp server."""
    if ctx.model_name.startswith("local:"):
        return ctx.model.bind(extra_body={"grammar": grammar}, max_tokens=max_tokens)
    return ctx.model


def retrieved(question: str, ctx: AgentContext) -> list[SqlExample]:
    """The verified examples most like `question` (`keel.tools.sql_examples`), none when the
    agent has none."""
    return similar(question, examples_for(ctx.settings).examples)


def _example_lines(question: str, ctx: AgentContext, today: date) -> list[str]:
    """The examples as the question itself is shown: question, its date bounds, then the SQL
    (bounds of the day the examples were written, so relative periods stay consistent)."""
    chosen = retrieved(question, ctx)
    if not chosen:
        return []
    written_on = examples_for(ctx.settings).written_on or today
    lines = [EXAMPLES_INTRO]
    for example in chosen:
        lines += ["", f"Question: {example.question}"]
        lines += [f"- {hint}" for hint in date_hints(example.question, written_on)]
        lines.append(f"SQL: {example.sql}")
    return [*lines, "", "Now the question to answer."]


def query_prompt(
    stage: Stage, state: AgentState | dict[str, Any], ctx: AgentContext
) -> list[BaseMessage]:
    today = _today(ctx)
    lines = _example_lines(stage.question, ctx, today)
    lines.append(f"Question: {stage.question}")
    hints = date_hints(stage.question, today)
    if hints:
        lines.append("Dates in the question (<date> is the date column to compare):")
        lines += [f"- {hint}" for hint in hints]
    lines.append(QUERY_REQUEST)
    prompt: list[BaseMessage] = [
        SystemMessage(f"{ctx.system_prompt}\n{date_context(today)}"),
        HumanMessage("\n".join(lines)),
    ]
    if state.get("signal") == "repair" and state.get("repair_hint"):
        rejected = strip_query(state.get("rejected_output") or "")
        if rejected:
            prompt.append(AIMessage(rejected))
        prompt.append(
            HumanMessage(f"That query cannot be used: {state['repair_hint']} Write it again.")
        )
    elif stage.refused:
        query, error = stage.refused[-1]
        prompt += [
            AIMessage(query),
            HumanMessage(f"The database refused that query: {error} Write a corrected query."),
        ]
    return prompt


def _result_lines(table: Table, question: str) -> list[str]:
    lines = [f"Result: {len(table.rows)} rows; columns: {', '.join(table.columns)}"]
    for number, row in enumerate(table.rows[:SHOWN_ROWS], start=1):
        lines.append(f"{number}. " + " | ".join(format_value(v) for v in row))
    if len(table.rows) > SHOWN_ROWS or table.truncated:
        lines.append(f"… ({len(table.rows)}{'+' if table.truncated else ''} rows in all)")
    if asks_for_total(question):
        lines += [f"sum of {c} over these rows: {format_value(t)}" for c, t in column_totals(table)]
    return lines


def answer_prompt(stage: Stage, ctx: AgentContext) -> list[BaseMessage]:
    """The query prompt, the query, and its rows: the same opening as the query call, so
    the server reuses what it already read (its prompt cache) and reads only the rows."""
    assert stage.table is not None
    request = ANSWER_REQUEST
    if is_yes_no(stage.question):
        request += " Start with Yes or No."
    shown = "\n".join(_result_lines(stage.table, stage.question))
    return [
        *query_prompt(Stage("query", stage.question), {}, ctx),
        AIMessage(stage.query),
        HumanMessage(f"The query returned:\n{shown}\n\nQuestion: {stage.question}\n{request}"),
    ]


def planned_request(
    stage: Stage, state: AgentState, ctx: AgentContext, deadline: float
) -> ModelRequest:
    """The model call of this stage: the query, or the answer from the rows."""
    cache_read = state.get("signal") != "repair"
    if stage.kind == "query":
        return ModelRequest(
            "reason",
            ctx,
            query_prompt(stage, state, ctx),
            deadline,
            model=_bound(ctx, QUERY_GRAMMAR, QUERY_MAX_TOKENS),
            tool_chars=0,
            cache_read=cache_read,
        )
    grammar = YES_NO_GRAMMAR if is_yes_no(stage.question) else ANSWER_GRAMMAR
    return ModelRequest(
        "compose",
        ctx,
        answer_prompt(stage, ctx),
        deadline,
        model=_bound(ctx, grammar, ANSWER_MAX_TOKENS),
        tool_chars=0,
        cache_read=cache_read,
    )


def answers_from_rows(stage: Stage) -> bool:
    """Whether the rows are the answer as they stand (no rows, or a single value): then no
    model call is made, since a sentence around one value adds only a chance to misread it."""
    table = stage.table
    if stage.kind != "answer" or table is None:
        return False
    return not table.rows or (len(table.rows) == 1 and len(table.rows[0]) == 1)


async def rows_reply(stage: Stage) -> GatedReply:
    """The answer stage's reply when `answers_from_rows`: written from the rows, no call."""
    assert stage.table is not None
    return GatedReply(AIMessage(answer_from_rows(stage.question, stage.table)), {**NO_USAGE})


def planned_decision(
    stage: Stage, reply: AIMessage, ctx: AgentContext, iteration: int, *, last_try: bool = False
) -> Decision:
    """The step the reply makes: a checked `sql_query` call, or a verified answer.

    Raises `MalformedOutputError` (the repair edge) for a query that does not fit the schema.
    On the `last_try` (no repair left) the schema and value checks only advise: a valid
    SELECT runs and the database decides, instead of the run degrading to an answer that no
    query backs.
    """
    meta: dict[str, Any] = {
        "id": reply.id,
        "usage_metadata": reply.usage_metadata,
        "response_metadata": reply.response_metadata,
    }
    text = text_of(reply.content)
    if stage.kind == "query" and "calculator" in ctx.tools.names():
        expression = arithmetic_of(text)
        if expression is not None:  # reads no table: arithmetic, for the calculator
            call = tool_call(
                name="calculator", args={"expression": expression}, id=call_id(iteration, 0, None)
            )
            thought = "plan: the query reads no table: arithmetic, computed by the calculator"
            used = retrieved(stage.question, ctx)
            if used:
                thought += f"; examples: {', '.join(e.label for e in used)}"
            return Decision(AIMessage(content="", tool_calls=[call], **meta), thought, calls=[call])
    if stage.kind == "query":
        schema = schema_from_prompt(ctx.system_prompt)
        query = check_query(text, schema, stage.question, strict=not last_try)
        call = tool_call(name="sql_query", args={"query": query}, id=call_id(iteration, 0, None))
        written = strip_query(text)
        thought = "plan: one query, checked against the schema"
        if last_try:
            thought = "plan: one query, last try: run as valid SQL, the database decides"
        used = retrieved(stage.question, ctx)
        if used:
            thought += f"; examples: {', '.join(e.label for e in used)}"
        if written != query:
            thought += f"; as written: {written}"
        return Decision(AIMessage(content="", tool_calls=[call], **meta), thought, calls=[call])
    assert stage.table is not None
    answer = text.strip()
    problem = verify_answer(answer, stage.question, stage.table)
    if answers_from_rows(stage):
        thought = "plan: the result is one value (or none): answered from the rows, no model call"
    elif problem is None:
        thought = f"plan: answer verified against the {len(stage.table.rows)} result rows"
    else:
        thought = f"plan: verifier rejected {answer[:200]!r} ({problem}); answered from the rows"
        answer = answer_from_rows(stage.question, stage.table)
    return Decision(AIMessage(content=answer, **meta), thought, answer=answer)
