"""Slips in a small model's query that have one obvious meaning, mended rather than refused.

A refusal costs a repair turn, and a 0.5B model at temperature 0 often writes the same
query again (then the plan runs out of repairs and the question fails). These rewrites
change nothing a query means when it is already right:

- real division: in SQLite `SUM(x) / COUNT(*)` of integers truncates (an average of 2.97
  reads 2), and no business question asks for a truncated quotient; a quotient is not cast
  back to an integer either;
- a column qualified by a table's name where the query gave that table an alias
  (`SUM(order_items.quantity) FROM order_items AS oi`, which SQLite refuses): the alias;
- a name it orders by but never gave (`SELECT SUM(…) … ORDER BY revenue`): when the query
  selects exactly one aggregate, that is what it orders by, so the aggregate gets the name
  (or, already named otherwise, the ORDER BY uses that name);
- a range of days the question names with both ends included (`from 2026-05-01 to
  2026-05-14, both days included`) compared `< '2026-05-14'`, which leaves the last day out:
  the bound becomes the day after it;
- a yes/no comparison written the wrong way round ("more customers from BR than from ES?"
  as `(… 'ES' …) > (… 'BR' …)`): when each side of the one comparison between amounts
  names one side of the question's "than", and the operator says the opposite of the
  question's "more"/"fewer", the two sides are swapped;
- a table it uses but never joins (`SUM(oi.quantity)` with no `order_items AS oi` in FROM):
  joined along its one foreign key (`_sql_joins`);
- a group it does not show (`SELECT SUM(…) … GROUP BY substr(order_date, 1, 7)`, selecting
  only aggregates): its rows would be numbers without what each is for, so the group key is
  selected too, first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

from keel.nodes._date_hints import inclusive_last_days, named_period_starts
from keel.nodes._planned_verify import THAN, is_yes_no
from keel.nodes._sql_joins import join_missing_tables, source_tables

if TYPE_CHECKING:  # sqlglot (~60 ms to import) loads with the first query checked
    from sqlglot import exp

__all__ = ["mend"]

_PERIODS = {4: "year", 7: "month", 10: "day"}
"""Length of a date prefix (`substr(d, 1, 7)`) → what it names."""


def mend(
    tree: exp.Expr,
    columns: set[str],
    question: str = "",
    tables: Mapping[str, Sequence[str]] | None = None,
) -> exp.Expr:
    """`tree` with its slips mended (in place); `columns` are the database's column names,
    `tables` its tables' columns (when known), `question` what it answers."""
    from sqlglot import exp

    for select in list(tree.find_all(exp.Select)):
        if tables:
            join_missing_tables(select, tables)
        _use_aliases(select)
        _name_what_is_ordered(select, columns)
        _select_what_is_grouped(select)
    _include_last_days(tree, inclusive_last_days(question) if question else set())
    if question:
        _orient_comparison(tree, question)
    return _real_division(tree)


_MORE = re.compile(r"\b(?:more|higher|greater|larger|bigger|exceed\w*)\b", re.IGNORECASE)
_LESS = re.compile(r"\b(?:fewer|less|lower|smaller)\b", re.IGNORECASE)
_ISO_DAY = re.compile(r"^\d{4}-\d\d-\d\d$")


def _orient_comparison(tree: exp.Expr, question: str) -> None:
    from sqlglot import exp

    than = THAN.search(question)
    if than is None or not is_yes_no(question):
        return
    before = question[: than.start()]
    more, less = bool(_MORE.search(before)), bool(_LESS.search(before))
    if more == less:
        return
    periods = named_period_starts(question)
    comparisons = [
        c
        for c in tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE)
        if not any(_is_day(side) for side in (c.this, c.expression))
    ]
    if len(comparisons) != 1:
        return
    (comparison,) = comparisons
    left = _sides(comparison.this, question, than.start(), periods)
    right = _sides(comparison.expression, question, than.start(), periods)
    if {*left, *right} != {1, 2} or len(left) != 1 or len(right) != 1:
        return
    greater = isinstance(comparison, exp.GT | exp.GTE)
    says_first_more = greater == (left == {1})
    if says_first_more != more:
        this, other = comparison.this, comparison.expression
        comparison.set("this", other)
        comparison.set("expression", this)


def _is_day(node: exp.Expr) -> bool:
    from sqlglot import exp

    return isinstance(node, exp.Literal) and node.is_string and bool(_ISO_DAY.match(node.name))


def _is_lower_bound(literal: exp.Literal) -> bool:
    from sqlglot import exp

    parent = literal.parent
    if isinstance(parent, exp.GTE | exp.GT | exp.EQ):
        return parent.expression is literal
    if isinstance(parent, exp.LTE | exp.LT):
        return parent.this is literal
    return isinstance(parent, exp.Between) and parent.args.get("low") is literal


def _sides(
    operand: exp.Expr, question: str, than: int, periods: list[tuple[int, date]]
) -> set[int]:
    """Which side of the question's "than" (1 before, 2 after) the values `operand` compares
    with belong to: a text value by where the question says it, a day by the period it
    starts."""
    from sqlglot import exp

    sides: set[int] = set()
    for literal in operand.find_all(exp.Literal):
        if not literal.is_string:
            continue
        value = literal.name
        if _ISO_DAY.match(value):
            if not _is_lower_bound(literal):
                continue  # '2026-06-01' also ends May: only where a period starts counts
            at = [pos for pos, first in periods if str(first) == value]
            sides |= {1 if pos < than else 2 for pos in at}
            continue
        found = {
            1 if m.start() < than else 2
            for m in re.finditer(rf"(?<!\w){re.escape(value)}(?!\w)", question, re.IGNORECASE)
        }
        if len(found) == 1:
            sides |= found
    return sides


def _include_last_days(tree: exp.Expr, last_days: set[date]) -> None:
    from sqlglot import exp

    if not last_days:
        return
    for below in tree.find_all(exp.LT):
        bound = below.expression
        if not (isinstance(bound, exp.Literal) and bound.is_string):
            continue
        try:
            day = date.fromisoformat(bound.this)
        except ValueError:
            continue
        if day in last_days:
            bound.replace(exp.Literal.string(str(day + timedelta(days=1))))


def _use_aliases(select: exp.Select) -> None:
    from sqlglot import exp

    aliased = {
        table.name.lower(): table.alias
        for table in source_tables(select)
        if table.alias and table.alias != table.name
    }
    if not aliased:
        return
    for column in select.find_all(exp.Column):
        alias = aliased.get(column.table.lower())
        if alias is not None and column.find_ancestor(exp.Select) is select:
            column.set("table", exp.to_identifier(alias))


def _aggregates(select: exp.Select) -> list[exp.Expr]:
    from sqlglot import exp

    return [p for p in select.expressions if p.find(exp.AggFunc) is not None]


def _name_what_is_ordered(select: exp.Select, columns: set[str]) -> None:
    from sqlglot import exp

    order = select.args.get("order")
    if order is None:
        return
    aliases = {p.alias.lower() for p in select.expressions if isinstance(p, exp.Alias)}
    for ordered in order.expressions:
        key = ordered.this
        if not isinstance(key, exp.Column) or key.table:
            continue
        name = key.name
        if name.lower() in columns or name.lower() in aliases:
            continue
        aggregates = _aggregates(select)
        if len(aggregates) != 1:
            continue
        (aggregate,) = aggregates
        if isinstance(aggregate, exp.Alias):
            key.replace(exp.column(aggregate.alias))
        else:
            aggregate.replace(exp.alias_(aggregate.copy(), name))
            aliases.add(name.lower())


def _select_what_is_grouped(select: exp.Select) -> None:
    from sqlglot import exp

    group = select.args.get("group")
    if group is None or not select.expressions:
        return
    if len(_aggregates(select)) != len(select.expressions):
        return  # something beside the aggregates says what each row is
    keys = [k for k in group.expressions if not isinstance(k, exp.Literal)]  # not GROUP BY 1
    shown = [_named(k) for k in keys]
    select.set("expressions", [*shown, *select.expressions])


def _named(key: exp.Expr) -> exp.Expr:
    """A group key as a selected column: a column as it is, an expression under a name."""
    from sqlglot import exp

    if isinstance(key, exp.Column):
        return key.copy()
    name = "group_key"
    length = key.args.get("length")
    if isinstance(key, exp.Substring) and isinstance(length, exp.Literal):
        name = _PERIODS.get(int(length.name), name) if length.name.isdigit() else name
    elif isinstance(key, exp.TimeToStr | exp.Anonymous):
        fmt = key.find(exp.Literal)
        text = fmt.name if fmt is not None else ""
        marks = (("%d", "day"), ("%m", "month"), ("%Y", "year"))
        name = next((period for mark, period in marks if mark in text), name)
    return exp.alias_(key.copy(), name)


def _real_division(tree: exp.Expr) -> exp.Expr:
    """Every `/` divides as real numbers, and a quotient is not cast back to an integer."""
    from sqlglot import exp

    integer_types = {exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT}
    for cast in list(tree.find_all(exp.Cast)):
        target = cast.args.get("to")
        is_int = isinstance(target, exp.DataType) and target.this in integer_types
        if is_int and cast.this.find(exp.Div) is not None:
            cast.replace(cast.this)
    for division in tree.find_all(exp.Div):
        division.set("typed", False)
    return tree
