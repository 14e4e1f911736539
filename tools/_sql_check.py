"""The query checks of `sql_query` (the first of its layers, see `keel.tools.sql`).

Imported by the first query `validate_select` checks, so sqlglot (~60 ms of start-up) is
loaded by the runs that send SQL and by no other.
"""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from keel.errors import ToolInputError
from keel.tools._sql_functions import Dialect, check_function, fold_identifier
from keel.tools.sql import MAX_QUERY_CHARS, _refuse

__all__ = ["MAX_NESTING", "validated"]

_FORBIDDEN: tuple[type[exp.Expr], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
    exp.TruncateTable, exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.Into, exp.Set,
    exp.Use, exp.Copy, exp.Grant, exp.Revoke, exp.Transaction, exp.Commit, exp.Rollback,
    exp.LoadData, exp.Analyze, exp.Cache, exp.Uncache, exp.Refresh, exp.Comment, exp.Lock,
    exp.Operator,
)  # fmt: skip
_DEFAULT_SCHEMAS: dict[Dialect, frozenset[str]] = {
    "sqlite": frozenset({"main"}),
    "postgres": frozenset({"public"}),
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TABLE_FUNCTIONS = frozenset({"generate_series", "json_each", "json_tree", "unnest"})
"""Set-returning functions allowed in FROM (they read no table)."""
MAX_NESTING = 32
"""Deepest parenthesis nesting accepted; sqlglot's recursive parser overflows near 50."""


@functools.lru_cache(maxsize=512)
def validated(query: str, dialect: Dialect, allowed: frozenset[str]) -> str:
    if len(query) > MAX_QUERY_CHARS:
        raise _refuse(f"the query is {len(query)} characters, over {MAX_QUERY_CHARS}")
    try:
        _check_nesting(query, dialect)
        tree = _one_statement(query, dialect)
        _check_tree(tree, allowed, dialect)
        normalized = tree.sql(dialect=dialect, comments=False)
        # What runs is the regenerated text: it must pass the same checks.
        _check_tree(_one_statement(normalized, dialect), allowed, dialect)
    except ToolInputError:
        raise
    except RecursionError as exc:
        raise _too_deep() from exc
    except SqlglotError as exc:
        detail = _ANSI.sub("", str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        raise _refuse(f"could not parse the SQL ({dialect} dialect): {detail}") from exc
    except Exception as exc:  # sqlglot on hostile text: re.error, IndexError, ...
        raise _refuse(
            f"could not parse the SQL ({dialect} dialect): {type(exc).__name__}: {exc}; "
            "write plain SQL without unusual escapes"
        ) from exc
    return normalized


def _too_deep() -> ToolInputError:
    return _refuse(
        f"the query is nested too deeply (at most {MAX_NESTING} levels of parentheses); "
        "flatten it with a WITH clause"
    )


def _check_nesting(query: str, dialect: Dialect) -> None:
    depth = deepest = 0
    for token in sqlglot.tokenize(query, read=dialect):
        if token.token_type is TokenType.L_PAREN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type is TokenType.R_PAREN:
            depth -= 1
    if deepest > MAX_NESTING:
        raise _too_deep()


def _one_statement(query: str, dialect: Dialect) -> exp.Expr:
    statements = [
        s for s in sqlglot.parse(query, read=dialect) if s is not None and not _is_empty(s)
    ]
    if not statements:
        raise _refuse("the query is empty: send one SELECT statement")
    if len(statements) > 1:
        raise _refuse(
            f"send exactly one statement; found {len(statements)} "
            "(remove the ';' and everything after it)"
        )
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation | exp.Subquery):
        raise _refuse(f"only SELECT queries are allowed; got {_kind(tree)}")
    return tree


def _check_tree(tree: exp.Expr, allowed: frozenset[str], dialect: Dialect) -> None:
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise _refuse(f"only read-only SELECT queries are allowed; found {_kind(node)}")
    for table in tree.find_all(exp.Table):
        _check_table(table, allowed, dialect)
    for func in tree.find_all(exp.Func):
        if problem := check_function(func, dialect):
            raise _refuse(problem)


def _is_empty(node: exp.Expr) -> bool:
    """A bare `;` carrying only a comment (e.g. `SELECT 1; -- done`)."""
    return isinstance(node, exp.Semicolon)


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Into):
        return "SELECT ... INTO (it creates a table)"
    if isinstance(node, exp.Lock):
        return "a locking read (FOR UPDATE/SHARE)"
    if isinstance(node, exp.Operator):
        return "OPERATOR(...) syntax (not allowed: write plain operators such as +)"
    return node.key.upper()


def _check_table(table: exp.Table, allowed: frozenset[str], dialect: Dialect) -> None:
    if table.this is None:
        if table.args.get("rows_from"):  # ROWS FROM (f(), g()): each f is a Table checked alone
            return
        raise _refuse(f"this FROM item is not allowed: {table.sql(dialect=dialect)}")
    if not isinstance(table.this, exp.Identifier):
        func = table.this
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if isinstance(func, exp.GenerateSeries | exp.ExplodingGenerateSeries):
            name = "generate_series"
        if name not in _TABLE_FUNCTIONS:
            raise _refuse(
                f"table function {name or func.sql(dialect=dialect)}() is not allowed in FROM; "
                f"query these tables instead: {', '.join(sorted(allowed))}"
            )
        return
    name = fold_identifier(table.this, dialect)
    qualifiers = [
        fold_identifier(part, dialect)
        for part in (table.args.get("catalog"), table.args.get("db"))
        if part is not None
    ]
    if not qualifiers and name in _visible_ctes(table, dialect):
        return
    full = ".".join([*qualifiers, name])
    in_default_schema = len(qualifiers) == 1 and qualifiers[0] in _DEFAULT_SCHEMAS[dialect]
    if full in allowed or ((not qualifiers or in_default_schema) and name in allowed):
        return
    shown = table.sql(dialect=dialect) if dialect == "postgres" else full
    raise _refuse(
        f"table '{shown}' is not allowed; the tables you may query are: "
        f"{', '.join(sorted(allowed))}"
    )


def _cte_name(cte: exp.CTE, dialect: Dialect) -> str:
    alias = cte.args.get("alias")
    return fold_identifier(alias.this if isinstance(alias, exp.TableAlias) else None, dialect)


def _visible_ctes(node: exp.Expr, dialect: Dialect) -> set[str]:
    """CTE names that `node` can see, honouring each dialect's scoping and name folding.

    Inside CTE number i, Postgres sees only CTEs 0..i-1 unless the WITH is RECURSIVE; SQLite
    sees the whole list. Being strict here matters: a name wrongly taken for a CTE would let
    a query read a real table of that name past the allow-list.
    """
    names: set[str] = set()
    child, parent = node, node.parent
    while parent is not None:
        with_ = parent.args.get("with_") or parent.args.get("with")
        if isinstance(with_, exp.With) and child is not with_:
            names |= {_cte_name(cte, dialect) for cte in with_.expressions}
        elif isinstance(parent, exp.With) and isinstance(child, exp.CTE):
            ctes = list(parent.expressions)
            visible = ctes if parent.args.get("recursive") or dialect == "sqlite" else []
            if not visible:
                visible = ctes[: ctes.index(child)]
            names |= {_cte_name(cte, dialect) for cte in visible}
        child, parent = parent, parent.parent
    return names
