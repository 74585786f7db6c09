"""SQL functions the uptime and fleet queries need, spelled for each database."""

from __future__ import annotations

from sqlalchemy import Boolean, ClauseElement, Float
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction


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


def postgres_sql(clause: ClauseElement) -> str:
    """``clause`` as Postgres SQL text with ``:name`` parameters, for statements written in SQL.

    Parenthesised, so it keeps its meaning beside the SQL it is pasted into.
    """
    return f"({clause.compile(dialect=_POSTGRES_NAMED)})"


_POSTGRES_NAMED = postgresql.dialect(paramstyle="named")


class json_array_contains(GenericFunction):  # noqa: N801
    """json_array_contains(column, value): the JSON array in ``column`` holds the string ``value``."""

    type = Boolean()
    inherit_cache = True


@compiles(json_array_contains, "postgresql")
def _json_array_contains_postgresql(element, compiler, **kw):
    column, value = element.clauses
    # JSONB containment: the GIN-indexable form, and exact (no text matching).
    array = f"jsonb_build_array(CAST({compiler.process(value, **kw)} AS text))"
    return f"({compiler.process(column, **kw)} @> {array})"


@compiles(json_array_contains, "sqlite")
def _json_array_contains_sqlite(element, compiler, **kw):
    column, value = element.clauses
    return (
        f"EXISTS (SELECT 1 FROM json_each({compiler.process(column, **kw)}) "
        f"WHERE json_each.value = {compiler.process(value, **kw)})"
    )
