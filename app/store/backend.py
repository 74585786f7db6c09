"""What differs between databases, chosen once per engine: the one seam for Postgres.

Portable code asks ``backend(conn)`` and never checks a dialect name. The
Postgres backend runs lone statements in autocommit (no BEGIN and COMMIT
round trips) and a prebuilt UPDATE at driver speed; the portable one gives
each an ordinary transaction. docs/decisions.md has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Dialect, Row, Table, Update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

_Compiled = tuple[str, dict[str, Callable[[Any], Any]]]


class LoneUpdate:
    """One prebuilt UPDATE, run by itself as its own transaction (the heartbeat's hot path)."""

    def __init__(self, statement: Update) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run the statement with ``params`` as its own transaction; the rows it changed."""
        return backend(conn).run_lone_update(conn, self, params)

    def compiled(self, dialect: Dialect) -> _Compiled:
        """The SQL and the bind processors of its parameters, compiled once per dialect."""
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


class Backend:
    """The portable behaviour: every statement inside an ordinary transaction."""

    #: Whether the database can render the service's JSON bodies itself (json_build_object).
    renders_json = False

    def __init__(self, dialect_module: Any) -> None:
        self._dialect_module = dialect_module

    @contextmanager
    def lone_statement(self, conn: Connection) -> Iterator[None]:
        """Run one statement that needs no transaction around it."""
        with conn.begin():
            yield

    def run_lone_update(self, conn: Connection, update: LoneUpdate, params: Mapping[str, Any]) -> int:
        with conn.begin():
            return conn.execute(update.statement, params).rowcount

    def insert_ignoring_conflicts(self, conn: Connection, table: Table, values: dict[str, Any]) -> int:
        """Insert ``values`` unless a unique constraint already holds such a row; 1 or 0."""
        insert = self._dialect_module.insert(table).values(values).on_conflict_do_nothing()
        # SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg's is gone by then: -1).
        return conn.execute(insert, execution_options={"preserve_rowcount": True}).rowcount

    def without_jit(self, conn: Connection) -> None:
        """For the rest of ``conn``'s transaction, plan queries without compiling them to code."""

    def upsert(self, conn: Connection, table: Table, values: dict[str, Any], *, key: str) -> Row[Any]:
        """Insert ``values`` or, if a row with the same ``key`` exists, overwrite it; return the row."""
        stmt = self._dialect_module.insert(table).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[key],
            set_={name: stmt.excluded[name] for name in values if name != key},
        )
        return conn.execute(stmt.returning(table)).one()

    def insert_or_lock(self, conn: Connection, table: Table, values: dict[str, Any], *, key: str) -> Row[Any]:
        """Insert ``values`` unless a row with the same ``key`` exists; return the row, locked.

        The conflict's no-op update takes the row lock (Postgres) until the
        transaction ends; SQLite's transactions hold the one write lock anyway.
        """
        stmt = self._dialect_module.insert(table).values(values)
        stmt = stmt.on_conflict_do_update(index_elements=[key], set_={key: stmt.excluded[key]})
        return conn.execute(stmt.returning(table)).one()


class PostgresBackend(Backend):
    """Postgres: lone statements in autocommit, the prebuilt UPDATE on the psycopg connection."""

    renders_json = True

    @contextmanager
    def lone_statement(self, conn: Connection) -> Iterator[None]:
        # Its own transaction on the server, which saves the BEGIN and COMMIT round trips.
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

    def without_jit(self, conn: Connection) -> None:
        # The uptime timeline's plan looks costly to the planner once maintenance
        # windows cut outages (a nested loop over the windows), enough for JIT,
        # whose compiling then takes longer than the query runs (measured in
        # README, Maintenance). SET LOCAL: it ends with the transaction.
        conn.exec_driver_sql("SET LOCAL jit = off")

    def run_lone_update(self, conn: Connection, update: LoneUpdate, params: Mapping[str, Any]) -> int:
        # SQLAlchemy's per-call work costs more CPU than the round trip, so the
        # compiled SQL goes to the driver directly, keeping what matters of
        # SQLAlchemy: the column types' bind processors, its error classes (the
        # 503 handler knows them) and the invalidation of a lost connection.
        sql, processors = update.compiled(conn.dialect)
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
                return _lone_cursor(pooled.info, driver).execute(sql, bound).rowcount
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


_LONE_CURSOR = "daemon_health_lone_cursor"


def _lone_cursor(info: dict[str, Any], driver: Any) -> Any:
    """One cursor per driver connection for the lone UPDATEs, kept in the pool's ``info``
    for that connection (SQLAlchemy empties it when the connection is closed or lost).

    A psycopg cursor caches how it converts each parameter type; a new cursor per
    statement (``connection.execute``) looks them up again every time: a third of
    the statement's CPU (69 against 45 us per heartbeat UPDATE, psycopg alone).
    """
    cursor = info.get(_LONE_CURSOR)
    if cursor is None or cursor.closed or cursor.connection is not driver:
        cursor = info[_LONE_CURSOR] = driver.cursor()
    return cursor


# The one table that maps a database to its behaviour.
_BACKENDS: dict[str, Backend] = {
    "postgresql": PostgresBackend(postgresql),
    "sqlite": Backend(sqlite),
}


def backend(conn: Connection) -> Backend:
    """The behaviour for ``conn``'s database (the same object for every connection of an engine)."""
    return _BACKENDS[conn.dialect.name]
