"""One prebuilt UPDATE, run by itself at driver speed: the heartbeat's hot path.

SQLAlchemy's per-call work for a Core statement (execution context, cache
lookup, parameter and result handling) costs more CPU than the database round
trip: on the heartbeat, which every daemon sends every ~30 s, it was a quarter
of the service's CPU per request (bench/heartbeat_cpu.py). On Postgres,
``LoneUpdate`` compiles its statement once per dialect and runs it in
autocommit on the psycopg connection under the request's SQLAlchemy
connection, keeping the parts of SQLAlchemy's handling that matter here:
values go through the column types' bind processors, a driver error comes out
as SQLAlchemy's (so the 503 handler knows it), and a lost connection is
invalidated, never returned to the pool. Other databases run the same Core
statement in an ordinary transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Dialect, Update
from sqlalchemy.exc import DBAPIError

_Compiled = tuple[str, dict[str, Callable[[Any], Any]]]


class LoneUpdate:
    def __init__(self, statement: Update) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run the statement with ``params`` as its own transaction; the rows it changed."""
        if conn.dialect.name != "postgresql":
            with conn.begin():
                return conn.execute(self.statement, params).rowcount
        sql, processors = self._compile(conn.dialect)
        bound = {
            name: processors[name](value) if name in processors else value
            for name, value in params.items()
        }
        pooled = conn.connection
        driver = pooled.driver_connection
        errors = conn.dialect.loaded_dbapi.Error
        try:
            driver.autocommit = True
            try:
                return driver.execute(sql, bound).rowcount
            finally:
                try:
                    driver.autocommit = False
                except errors:
                    # Broken mid-statement: it must not go back to the pool in autocommit.
                    conn.invalidate()
        except errors as exc:
            lost = conn.invalidated or conn.dialect.is_disconnect(exc, pooled, None)
            if lost:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                sql, bound, exc, errors, connection_invalidated=lost, dialect=conn.dialect
            ) from exc

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = self.statement.compile(dialect=dialect)
            processors = {}
            for name, bind in statement.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
            compiled = self._compiled[dialect.name] = (statement.string, processors)
        return compiled
