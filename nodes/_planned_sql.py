"""The planned flow's query check: one SELECT over tables and columns that exist.

The 0.5B local model writes plausible SQL over columns that are not where it puts them
(`customers.order_date`), or over ambiguous ones (`id` in a join). The database then refuses
the query at run time and the model loops on it. Here the query is checked before it runs,
against the schema the model was shown (the `- table(col, …)` lines of the system prompt,
which `keel.tools.sql_context` writes from the database itself), and a refusal says what to
change in words the model can act on ("`order_date` is a column of orders, not of
customers: join orders"). The model gets one repair turn with that message.

Slips with one obvious meaning (integer division, ORDER BY a name never given, a group key
not selected) are mended before the check, by `keel.nodes._sql_mend`.

Dates named in the question ("April 2026", "the last 30 days", "2026-12-04") are turned into
the bounds a query compares with by `keel.nodes._date_hints`, rather than left to the model's
arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keel.errors import ErrorCode, MalformedOutputError
from keel.nodes._date_hints import date_hints
from keel.nodes._planned_verify import THAN, is_yes_no
from keel.nodes._sql_mend import mend

if TYPE_CHECKING:  # sqlglot (~60 ms to import) loads with the first query checked
    from sqlglot import exp

__all__ = ["Schema", "arithmetic_of", "check_query", "date_hints", "schema_from_prompt"]

_TABLE_LINE = re.compile(r"^- (\w+)\(([\w, ]*)\)\s*$", re.MULTILINE)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
_UNRESOLVED = re.compile(r"Column '([^']+)' could not be resolved|Unknown column: (\w+)")
"""sqlglot's two ways of naming a column no table of the query has: unqualified (`name`), or
qualified with the alias of a table that lacks it (`oi.customer_id`)."""


@dataclass(frozen=True)
class Schema:
    """Tables and their columns, as the model was shown them (lower case)."""

    tables: dict[str, tuple[str, ...]]
    notes: str = ""
    """The business rules shown after the tables ("Revenue counts only completed orders…")."""

    def owners(self, column: str) -> list[str]:
        """The tables that have `column`."""
        return [t for t, cols in self.tables.items() if column.lower() in cols]


def schema_from_prompt(system_prompt: str) -> Schema:
    """The `- table(col, …)` lines of the prompt's database section (empty if none)."""
    lines = list(_TABLE_LINE.finditer(system_prompt))
    tables = {
        m.group(1).lower(): tuple(c.strip().lower() for c in m.group(2).split(",") if c.strip())
        for m in lines
    }
    notes = system_prompt[lines[-1].end() :].strip() if lines else ""
    return Schema(tables, notes)


def _refuse(message: str) -> MalformedOutputError:
    return MalformedOutputError(message, code=ErrorCode.MALFORMED_OUTPUT)


def strip_query(text: str) -> str:
    """The query in a reply: without a code fence, surrounding space or a final `;`."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    return text.rstrip("; \n\t")


_ARITHMETIC_SELECT = re.compile(
    r"^select\s+(?P<expression>[\d\s.,+\-*/%^()a-z]+?)(?:\s+as\s+\w+)?$", re.IGNORECASE
)
_CALCULATOR_WORDS = frozenset({"sqrt", "round", "abs", "min", "max"})


def arithmetic_of(text: str) -> str | None:
    """The expression of a query that reads no table (`SELECT (593 + 8114) * 15 AS result`),
    when it is plain arithmetic the calculator reads; None for anything else.

    The model writes arithmetic as a SELECT too, in whatever notation it knows (`2 ** 14`,
    `2^14`, `SQRT(1764)`); the database refuses half of those, the calculator reads them."""
    found = _ARITHMETIC_SELECT.match(strip_query(text))
    if found is None:
        return None
    expression = found["expression"].strip()
    words = {w.lower() for w in re.findall(r"[a-z]+", expression, re.IGNORECASE)}
    if not re.search(r"\d", expression) or not words <= _CALCULATOR_WORDS:
        return None
    return re.sub(r"[a-z]+", lambda m: m[0].lower(), expression, flags=re.IGNORECASE)


def check_query(
    text: str, schema: Schema, question: str = "", dialect: str = "sqlite", *, strict: bool = True
) -> str:
    """The query to run (mended), or `MalformedOutputError` saying what to fix.

    With `question`, every text value the query compares with must come from it (or from a
    business rule of the notes about a term the question uses, see `_ruled`). Not `strict`
    (the model's last try): only one valid SELECT is required; names and values are left to
    the database, whose refusal is the last word."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    query = strip_query(text)
    if not query:
        raise _refuse("the reply holds no query. Write one SELECT statement.")
    try:
        statements = [s for s in sqlglot.parse(query, read=dialect) if s is not None]
    except SqlglotError as exc:
        first = str(exc).splitlines()[0][:200]
        raise _refuse(f"the query is not valid SQL ({first}). Write one SELECT statement.") from exc
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise _refuse("write exactly one SELECT statement (no other statements).")
    columns = {c for cols in schema.tables.values() for c in cols}
    tree = mend(statements[0], columns, question, schema.tables)
    if question and strict:
        _check_values(tree, question, schema.notes)
        _check_named_values(tree, question, schema.notes)
        _check_comparison(tree, question)
    if schema.tables and strict:
        _check_names(tree, schema, dialect)
    return tree.sql(dialect=dialect)


_DATE_VALUE = re.compile(r"^\d{4}-\d\d(-\d\d)?")
_SENTENCE = re.compile(r"(?<=[.;])\s+|\n")
_ILLUSTRATION = {"for", "e.g.", "example", "such"}


def _mentions(text: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE) is not None


def _ruled(value: str, question: str, notes: str) -> bool:
    """Whether a business rule of `notes` brings `value` in: a sentence that quotes it
    ('completed') and opens with a term the question uses ("Revenue counts only …")."""
    for sentence in _SENTENCE.split(notes):
        words = sentence.split()
        if f"'{value.lower()}'" not in sentence.lower() or not words:
            continue
        subject = words[0].strip(",:").lower()
        if subject not in _ILLUSTRATION and len(subject) > 2 and _mentions(question, subject):
            return True
    return False


def _check_values(tree: exp.Expr, question: str, notes: str) -> None:
    """The query compares only with values the question names (a small model adds the
    sample's `status = 'completed'` to questions about customers, or "whatever their
    status")."""
    from sqlglot import exp

    comparisons = (exp.EQ, exp.NEQ, exp.In, exp.Like, exp.ILike, exp.GT, exp.GTE, exp.LT, exp.LTE)
    for comparison in tree.find_all(*comparisons):
        for literal in comparison.find_all(exp.Literal):
            if not literal.is_string:
                continue
            value = literal.this.strip("%_ ")
            if not value or _DATE_VALUE.match(value) or _mentions(question, value):
                continue
            if _ruled(value, question, notes):
                continue
            raise _refuse(
                f"the query compares with {literal.this!r}, which the question does not name:"
                " drop that condition, or use the question's own words."
            )


_QUOTED = re.compile(r"(?<!\w)'([^']{2,80})'(?!\w)")
_ONE_OF = re.compile(r"\b(\w+)\.(\w+) is one of ((?:\w+(?:, | or | and |, or |, and ))*\w+)")


def named_values(question: str, notes: str) -> dict[str, str]:
    """The values `question` names that a query must compare with, each with the column it
    belongs to when the notes say (`orders.status is one of completed, pending, …`; else
    ""): the values it quotes ('Cloud Storage Plan') and the listed values it uses as words
    ("completed orders")."""
    found = {value: "" for value in _QUOTED.findall(question)}
    for table, column, listed in _ONE_OF.findall(notes):
        for value in re.split(r",\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+", listed):
            if value and _mentions(question, value):
                found[value] = f"{table}.{column}"
    return found


def _check_named_values(tree: exp.Expr, question: str, notes: str) -> None:
    """Every value the question names is compared with (a small model drops "completed"
    from "how many completed orders", or the product from "units of 'Setup Service'")."""
    from sqlglot import exp

    used = {lit.this.strip("%_ ").lower() for lit in tree.find_all(exp.Literal) if lit.is_string}
    for value, column in named_values(question, notes).items():
        if value.lower() in used:
            continue
        where = f"{column} = '{value}'" if column else f"the column it is a value of = '{value}'"
        raise _refuse(
            f"the question names '{value}', and the query does not use it: add the condition "
            f"({where})."
        )


def _check_comparison(tree: exp.Expr, question: str) -> None:
    """A yes/no question that compares ("more … than", "higher than") gets a query that
    compares: one with no `>`/`<` but between a column and a date counts or adds up both
    sides ("customers from BR or ES") and its answer says nothing about which is larger."""
    from sqlglot import exp

    if not (is_yes_no(question) and THAN.search(question)):
        return
    for comparison in tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE):
        sides = (comparison.this, comparison.expression)
        if not any(isinstance(s, exp.Literal) and _DATE_VALUE.match(s.name) for s in sides):
            return
    raise _refuse(
        "the question compares two amounts, and the query selects no comparison. Select the "
        "comparison itself as one number: SELECT (the first amount) > (the second amount)."
    )


def _check_names(tree: exp.Expr, schema: Schema, dialect: str) -> None:
    from sqlglot import exp
    from sqlglot.errors import OptimizeError, SqlglotError
    from sqlglot.optimizer.qualify import qualify

    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    used: list[str] = []
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if not name or name in ctes:
            continue
        if name not in schema.tables:
            known = ", ".join(sorted(schema.tables))
            raise _refuse(f"there is no table {table.name!r}. The tables are: {known}.")
        used.append(name)
    mapping: dict[str, object] = {
        t: dict.fromkeys(cols, "TEXT") for t, cols in schema.tables.items()
    }
    try:
        qualify(tree.copy(), schema=mapping, dialect=dialect, validate_qualify_columns=True)
    except OptimizeError as exc:
        raise _refuse(_column_problem(str(exc), schema, used)) from exc
    except SqlglotError as exc:
        first = str(exc).splitlines()[0][:200]
        raise _refuse(f"the query cannot be read against the schema ({first}).") from exc


def _column_problem(error: str, schema: Schema, used: list[str]) -> str:
    found = _UNRESOLVED.search(error)
    if found is None:
        return f"the query does not fit the schema ({error.splitlines()[0][:200]})."
    column = (found.group(1) or found.group(2)).split(".")[-1]
    owners = schema.owners(column)
    in_query = [t for t in owners if t in used]
    if len(in_query) > 1:
        return (
            f"the column {column!r} is in several tables of the query ({', '.join(in_query)}):"
            f" write it with its table's alias, e.g. {in_query[0]}.{column}."
        )
    if in_query:
        return (
            f"the column {column!r} could not be matched to a table of the query: write it "
            f"with the alias of table {in_query[0]}."
        )
    if owners:
        return (
            f"{column!r} is a column of {' and '.join(owners)}, not of "
            f"{', '.join(dict.fromkeys(used)) or 'the tables in FROM'}: join {owners[0]} "
            f"to use it."
        )
    listed = "; ".join(f"{t}({', '.join(schema.tables[t])})" for t in dict.fromkeys(used))
    return f"no table has a column {column!r}. The columns are: {listed or 'see the schema'}."
