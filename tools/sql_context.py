"""What the model is told about the SQL tool's database: dialect, tables, columns, rules.

Small models write correct SQL only when they see the schema; without it the 0.5B local model
invented tables and columns. The schema is read from the database itself (allow-listed tables
only, through the same read-only path as `sql_query`), so it never drifts from the data.
Business rules that no schema shows ("revenue counts completed orders only") come from
`KEEL_SQL__NOTES`, or, for the bundled sample database, from `tools.sample_db`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import date, timedelta

from keel.config import Settings, SqlToolSettings
from keel.errors import KeelError
from keel.tools._sql_names import fold
from keel.tools.sample_db import SAMPLE_DB_NOTES
from keel.tools.sql import SqlTarget, execute_readonly, resolve_target

__all__ = ["date_context", "describe_database"]

_COLUMNS_SQL = {
    "sqlite": (
        "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
        "WHERE m.type IN ('table', 'view') ORDER BY m.name, p.cid"
    ),
    "postgres": (
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ),
}
_DIALECT_NAME = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def _columns(target: SqlTarget, settings: SqlToolSettings) -> dict[str, list[str]]:
    result = execute_readonly(
        target,
        _COLUMNS_SQL[target.dialect],
        row_cap=5000,
        timeout_s=5,
        allow_superuser=settings.allow_superuser,
    )
    wanted = {fold(t, quoted=True, dialect=target.dialect) for t in settings.allowed_tables}
    columns: dict[str, list[str]] = defaultdict(list)
    for table, column in result.rows:
        if fold(str(table), quoted=True, dialect=target.dialect) in wanted:
            columns[str(table)].append(str(column))
    return dict(columns)


def describe_database(settings: Settings) -> str:
    """A prompt section naming the dialect, each readable table with its columns, and notes.

    An unreachable database yields a one-line section instead of an error: the run can still
    go on, and the tool itself reports the problem when it is called.
    """
    target = resolve_target(settings)
    try:
        columns = _columns(target, settings.sql)
    except KeelError as exc:
        return f"The sql_query tool's database could not be described: {exc.message}"
    lines = [f"The sql_query tool reads a {_DIALECT_NAME[target.dialect]} database. Tables:"]
    lines += [f"- {table}({', '.join(cols)})" for table, cols in sorted(columns.items())]
    notes = settings.sql.notes
    if notes is None and settings.database_url is None:
        notes = SAMPLE_DB_NOTES
    if notes:
        lines.append(notes.strip())
    return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def date_context(today: date) -> str:
    """Today's date and the bounds of this and last month, as ISO dates a query can use."""
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    next_month = (this_month + timedelta(days=32)).replace(day=1)
    return (
        f"Today is {today.isoformat()}. Last month: order_date >= '{last_month.isoformat()}' "
        f"AND order_date < '{this_month.isoformat()}'. This month: order_date >= "
        f"'{this_month.isoformat()}' AND order_date < '{next_month.isoformat()}'."
    )
