"""One engine per process, built lazily.

The engine is created on first use, so under gunicorn each worker builds its
own pool after the fork instead of sharing sockets inherited from the master.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from app.store.breaker import CircuitBreaker
from app.store.deadlines import bound_every_call


def build_engine(
    url: str, *, timeout: int, on_timeout: Callable[[], None] = lambda: None
) -> Engine:
    """An engine tuned to fail fast: a dead or silent database must not hang requests.

    ``on_timeout`` runs when a Postgres call ran out of time (see app/store/deadlines.py).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, timeout=timeout)
    engine = create_engine(
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
    bound_every_call(engine, seconds=timeout, on_timeout=on_timeout)
    return engine


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
        self.breaker = CircuitBreaker(probe=self._probe)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = build_engine(self.url, timeout=self.timeout,
                                        on_timeout=self.breaker.trip)
        return self._engine

    def _probe(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
