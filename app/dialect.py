"""Dialect differences in one place: upserts, and the time arithmetic of uptime."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Float, Row, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction


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
