"""The least-privilege Postgres role `sql_query` should connect as in production.

The query checks in `keel.tools.sql` are one layer; the database's own privileges are the
one that holds whatever a parser misses. The role made here can log in, read the
allow-listed tables and nothing else: no superuser, no role or database creation, no
replication, no row-level-security bypass, no inherited privileges; every transaction is
read-only by default, a statement stops after a minute even if a client forgets its own
timeout, and names resolve in the tables' schemas only. Equivalent SQL, for a DBA who
prefers to run it by hand (role `keel_reader`, tables in `public`)::

    CREATE ROLE keel_reader LOGIN PASSWORD '…' NOSUPERUSER NOCREATEDB NOCREATEROLE
        NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20;
    ALTER ROLE keel_reader SET default_transaction_read_only = on;
    ALTER ROLE keel_reader SET statement_timeout = '60s';
    ALTER ROLE keel_reader SET search_path = public;
    GRANT CONNECT ON DATABASE sales TO keel_reader;
    GRANT USAGE ON SCHEMA public TO keel_reader;
    GRANT SELECT ON public.customers, public.products, public.orders, public.order_items
        TO keel_reader;

Then point `KEEL_DATABASE_URL` at `postgresql://keel_reader:…@host/sales`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import sql

__all__ = ["create_readonly_role", "readonly_role_statements"]

_OPTIONS = (
    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT "
    "CONNECTION LIMIT 20"
)


def _table(name: str, schema: str) -> sql.Identifier:
    parts = name.split(".")
    return sql.Identifier(*parts) if len(parts) > 1 else sql.Identifier(schema, name)


def readonly_role_statements(
    role: str,
    password: str,
    tables: Iterable[str],
    *,
    database: str,
    exists: bool,
    schema: str = "public",
) -> list[sql.Composed]:
    """The statements that create (or, when it `exists`, reset) `role` with SELECT on `tables`.

    Table names are taken as stored (`sales.orders` names its schema; others are in `schema`).
    """
    names = list(tables)
    if not names:
        raise ValueError("name at least one table the role may read")
    ident = sql.Identifier(role)
    verb = "ALTER" if exists else "CREATE"
    schemas = {tuple(n.split(".")[:-1]) or (schema,) for n in names}
    statements = [
        sql.SQL(f"{verb} ROLE {{}} WITH {_OPTIONS} PASSWORD {{}}").format(
            ident, sql.Literal(password)
        ),
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident),
        sql.SQL("ALTER ROLE {} SET statement_timeout = '60s'").format(ident),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(
            ident, sql.SQL(", ").join(sql.Identifier(*s) for s in sorted(schemas))
        ),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(
            sql.Identifier(schema), ident
        ),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident),
    ]
    statements += [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(*s), ident)
        for s in sorted(schemas)
    ]
    statements.append(
        sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.SQL(", ").join(_table(n, schema) for n in names), ident
        )
    )
    return statements


def create_readonly_role(
    admin_url: str, role: str, password: str, tables: Iterable[str], *, schema: str = "public"
) -> None:
    """Create or reset `role` on the database of `admin_url` (a role allowed to grant).

    Runs in one transaction, so a failure leaves the database as it was.
    """
    import psycopg

    with psycopg.connect(admin_url) as conn:
        database = conn.info.dbname
        row: Any = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        for statement in readonly_role_statements(
            role, password, tables, database=database, exists=row is not None, schema=schema
        ):
            conn.execute(statement)
