"""How the SQL tool's databases spell names, without sqlglot (the schema description and
`validate_select` need it before any query is parsed).

Names are compared as the database compares them: Postgres folds unquoted names to lower
case and keeps quoted ones exactly (`"Products"` is not `products`); SQLite compares names
case-insensitively, quoted or not. Both fold ASCII letters only.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Dialect", "fold"]

Dialect = Literal["sqlite", "postgres"]
"""The SQL dialects the tool speaks."""

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str, *, quoted: bool, dialect: Dialect) -> str:
    """`name` as the database stores it: unquoted (and all SQLite) names fold ASCII case."""
    if quoted and dialect == "postgres":
        return name
    return name.translate(_ASCII_LOWER)
