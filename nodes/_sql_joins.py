"""A table the query uses but never joins, joined along its one foreign key.

The 1.5B local model, asked which country's customers brought the most revenue, wrote
`… FROM customers AS c JOIN orders AS o ON c.id = o.customer_id … SUM(oi.quantity *
oi.unit_price)`: every part right but the join of `order_items AS oi`. Refused, it rewrote
the join the wrong way (`order_items.customer_id`, which does not exist) until its repairs ran
out. When a column's qualifier names no table of its query, and the qualifier is one
table's name or initials (`oi`: order_items) that has every column written with it, and
exactly one foreign key links that table to one table of the query (`<table>_id` → `id`,
singular names: `order_items.order_id` → `orders.id`), the join is added. Anything less
certain is left to the schema check, which asks the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["join_missing_tables", "source_tables"]


def join_missing_tables(select: exp.Select, tables: Mapping[str, Sequence[str]]) -> None:
    """Add to `select` (in place) the join of each table it uses without joining it."""
    from sqlglot import exp

    sources = _sources(select)
    if not sources:
        return
    known = {*sources, *sources.values()}  # a table's own name despite its alias: `_use_aliases`
    outer = select.parent
    while outer is not None:  # a correlated subquery's column of an enclosing query's table
        if isinstance(outer, exp.Select):
            enclosing = _sources(outer)
            known |= {*enclosing, *enclosing.values()}
        outer = outer.parent
    known |= {cte.alias_or_name.lower() for cte in select.root().find_all(exp.CTE)}
    wanted: dict[str, set[str]] = {}
    for column in select.find_all(exp.Column):
        qualifier = column.table.lower()
        if qualifier and qualifier not in known and column.find_ancestor(exp.Select) is select:
            wanted.setdefault(qualifier, set()).add(column.name.lower())
    for qualifier, columns in wanted.items():
        table = _table_named(qualifier, tables)
        if table is None or not columns <= set(tables[table]):
            continue
        links = [
            link
            for alias, joined in sources.items()
            if (link := _link(table, qualifier, joined, alias, tables)) is not None
        ]
        if len(links) == 1:
            source = table if qualifier == table else f"{table} AS {qualifier}"
            select.join(source, on=links[0], copy=False)
            sources[qualifier] = table


def source_tables(select: exp.Select) -> list[exp.Table]:
    """The tables of the select's FROM and JOINs (not its subqueries)."""
    from sqlglot import exp

    sources = [select.args.get("from_") or select.args.get("from"), *select.args.get("joins", [])]
    return [s.this for s in sources if s is not None and isinstance(s.this, exp.Table)]


def _sources(select: exp.Select) -> dict[str, str]:
    """The select's FROM and JOIN tables: alias (or name) → table name, lower case."""
    return {t.alias_or_name.lower(): t.name.lower() for t in source_tables(select) if t.name}


def _table_named(qualifier: str, tables: Mapping[str, Sequence[str]]) -> str | None:
    """The one table `qualifier` names: its name, or the initials of its words."""
    if qualifier in tables:
        return qualifier
    by_initials = [t for t in tables if "".join(w[0] for w in t.split("_") if w) == qualifier]
    return by_initials[0] if len(by_initials) == 1 else None


def _singular(table: str) -> str:
    return table[:-1] if table.endswith("s") else table


def _link(
    table: str, alias: str, joined: str, joined_alias: str, tables: Mapping[str, Sequence[str]]
) -> str | None:
    """The ON condition of `table AS alias` with `joined AS joined_alias`, when one foreign
    key links them."""
    conditions = []
    if f"{_singular(joined)}_id" in tables[table] and "id" in tables.get(joined, ()):
        conditions.append(f"{alias}.{_singular(joined)}_id = {joined_alias}.id")
    if f"{_singular(table)}_id" in tables.get(joined, ()) and "id" in tables[table]:
        conditions.append(f"{joined_alias}.{_singular(table)}_id = {alias}.id")
    return conditions[0] if len(conditions) == 1 else None
