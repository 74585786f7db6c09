"""Dialect differences in one place: INSERT ... ON CONFLICT for each backend."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert(conn: Connection, table: Table, values: dict[str, Any], *, key: str) -> Row[Any]:
    """Insert ``values`` or, if a row with the same ``key`` exists, overwrite it; return the row."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
    stmt = dialect.insert(table).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key],
        set_={name: stmt.excluded[name] for name in values if name != key},
    )
    return conn.execute(stmt.returning(table)).one()
