"""One engine per process, built lazily.

The engine is created on first use, so under gunicorn each worker builds its
own pool after the fork instead of sharing sockets inherited from the master.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def build_engine(url: str, *, timeout: int) -> Engine:
    """An engine tuned to fail fast: a dead database must not hang requests."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, timeout=timeout)
    return create_engine(
        url,
        # No pool_pre_ping: it costs a round trip per request. A dropped
        # connection fails one request with a 503 and SQLAlchemy then
        # discards the whole pool, so the next request reconnects.
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeout,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": timeout,
            "options": f"-c statement_timeout={timeout * 1000}",
        },
    )


def _sqlite_engine(url: str, *, timeout: int) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute(f"PRAGMA busy_timeout={timeout * 1000}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Every transaction here writes; taking the write lock up front avoids
        # SQLITE_BUSY on a read-to-write upgrade, which no busy timeout retries.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """Holds a lazily built engine for one app in one process."""

    def __init__(self, url: str, *, timeout: int) -> None:
        self.url = url
        self.timeout = timeout
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = build_engine(self.url, timeout=self.timeout)
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
