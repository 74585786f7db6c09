"""Dialect differences in one place: upserts, and the time arithmetic of uptime."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Float, Row, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction


@contextmanager
def lone_statement(conn: Connection) -> Iterator[None]:
    """Run one statement that needs no transaction around it.

    On Postgres it runs in autocommit, its own transaction, which saves the
    BEGIN and COMMIT round trips on the hot path; elsewhere it gets an
    ordinary transaction.
    """
    if conn.dialect.name != "postgresql":
        with conn.begin():
            yield
        return
    conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield
        conn.commit()  # ends SQLAlchemy's bookkeeping; nothing goes to the server
    finally:
        if conn.in_transaction():
            conn.rollback()
        # A lost connection took its settings with it; restoring them would reconnect.
        if not conn.invalidated:
            conn.execution_options(isolation_level=conn.default_isolation_level)


def _insert(conn: Connection, table: Table):
    return {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name].insert(table)


def insert_ignoring_conflicts(conn: Connection, table: Table, values: dict[str, Any]) -> int:
    """Insert ``values`` unless a unique constraint already holds such a row; 1 or 0."""
    return conn.execute(_insert(conn, table).values(values).on_conflict_do_nothing()).rowcount


def upsert(conn: Connection, table: Table, values: dict[str, Any], *, key: str) -> Row[Any]:
    """Insert ``values`` or, if a row with the same ``key`` exists, overwrite it; return the row."""
    stmt = _insert(conn, table).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key],
        set_={name: stmt.excluded[name] for name in values if name != key},
    )
    return conn.execute(stmt.returning(table)).one()


class greatest(GenericFunction):  # noqa: N801 - SQL function names are lower case
    """The larger of its arguments (SQLite spells it max())."""

    inherit_cache = True


class least(GenericFunction):  # noqa: N801
    """The smaller of its arguments (SQLite spells it min())."""

    inherit_cache = True


class seconds_between(GenericFunction):  # noqa: N801
    """seconds_between(a, b): b - a in seconds, as a float."""

    type = Float()
    inherit_cache = True


@compiles(greatest, "sqlite")
def _greatest_sqlite(element, compiler, **kw):
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _least_sqlite(element, compiler, **kw):
    return f"min({compiler.process(element.clauses, **kw)})"


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element, compiler, **kw):
    start, end = element.clauses
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw):
    start, end = element.clauses
    return (
        f"((julianday({compiler.process(end, **kw)}) - "
        f"julianday({compiler.process(start, **kw)})) * 86400.0)"
    )
