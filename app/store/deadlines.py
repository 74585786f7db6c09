"""Client-side deadlines on every wait for Postgres.

A server that stops answering without closing its connections (frozen, cut off
by a partition, stuck on a full disk) still has its kernel acknowledge our
packets, so TCP keepalives never fire, and its own ``statement_timeout``
cannot run: only the client can end the wait. Every psycopg connection the
engine opens is a ``BoundedConnection``. Each statement, commit and rollback
on it (SQLAlchemy's, the pool's reset, and LoneUpdate's straight on the driver
connection alike) registers a deadline with the process's one ``Watchdog``
thread, which shuts down the socket of a call still waiting past it. psycopg's
wait then fails at once as a lost connection, which SQLAlchemy invalidates,
and ``on_timeout`` (the circuit breaker) hears of it. Connecting is bounded by
psycopg itself: it enforces ``connect_timeout`` on the client side.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

# How often the watchdog looks: a late call is cut off at most this much after its deadline.
RESOLUTION_SECONDS = 0.1
# Where the server still runs its statement_timeout, it gets the first go: it cancels the
# statement and keeps the connection, where the watchdog has to drop it.
GRACE_SECONDS = 0.5


@dataclass(eq=False, slots=True)
class CallGuard:
    """What the watchdog needs to cut off one connection's calls."""

    fd: int
    seconds: float
    on_timeout: Callable[[], None]


class Watchdog:
    """One thread per process that cuts off database calls still waiting past their deadline."""

    def __init__(self, resolution: float = RESOLUTION_SECONDS) -> None:
        self.resolution = resolution
        self._reset()
        # Threads do not survive a fork (gunicorn forks its workers): a child starts its own.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._armed: dict[CallGuard, float] = {}
        # Taken by disarm and by a cut, so that a call which has ended (and whose
        # socket may be closed and its number reused) is never cut afterwards.
        self._lock = threading.Lock()
        self._running_in: int | None = None

    def start(self) -> None:
        """Make sure the thread runs in this process."""
        with self._lock:
            if self._running_in == os.getpid():
                return
            self._running_in = os.getpid()
        threading.Thread(target=self._watch, name="db-watchdog", daemon=True).start()

    def arm(self, guard: CallGuard) -> None:
        """A call on ``guard``'s connection starts now (the hot path: one dict store)."""
        self._armed[guard] = time.monotonic() + guard.seconds

    def disarm(self, guard: CallGuard) -> None:
        with self._lock:
            self._armed.pop(guard, None)

    def _watch(self) -> None:
        while True:
            time.sleep(self.resolution)
            now = time.monotonic()
            # A copy, because request threads arm and disarm meanwhile.
            for guard, deadline in self._armed.copy().items():
                if deadline <= now:
                    try:
                        self._cut(guard, deadline)
                    except Exception:  # noqa: BLE001 - without this thread nothing is bounded
                        log.exception("database watchdog failed to cut off a call")

    def _cut(self, guard: CallGuard, deadline: float) -> None:
        with self._lock:
            if self._armed.get(guard) is not deadline:
                return  # the call ended (or a later one began) since we looked
            del self._armed[guard]
            log.warning("database call still waiting after %.1fs: connection cut off",
                        guard.seconds)
            # Before the cut, so that whoever sees the call fail finds the breaker open.
            try:
                guard.on_timeout()
            except Exception:  # noqa: BLE001 - the watchdog must outlive any callback
                log.exception("database timeout callback failed")
            _shut_down(guard.fd)


def _shut_down(fd: int) -> None:
    # shutdown(), not close(): the descriptor stays psycopg's, which finds it
    # dead at once and closes it itself. detach() leaves it open here.
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
    finally:
        sock.detach()


WATCHDOG = Watchdog()


class BoundedCursor(psycopg.Cursor):
    __slots__ = ()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        guard = self.connection.guard
        WATCHDOG.arm(guard)
        try:
            return super().execute(*args, **kwargs)
        finally:
            WATCHDOG.disarm(guard)

    def executemany(self, *args: Any, **kwargs: Any) -> None:
        guard = self.connection.guard
        WATCHDOG.arm(guard)
        try:
            return super().executemany(*args, **kwargs)
        finally:
            WATCHDOG.disarm(guard)


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose statements, commits and rollbacks end by a deadline."""

    guard: CallGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = BoundedCursor  # connection.execute() uses it too

    def commit(self) -> None:
        self._end_transaction(super().commit)

    def rollback(self) -> None:
        self._end_transaction(super().rollback)

    def _end_transaction(self, end: Callable[[], None]) -> None:
        # With no transaction open (autocommit work, or one already ended: the pool
        # rolls back every connection it takes back) psycopg sends nothing, so
        # there is no wait to bound.
        if self.pgconn.transaction_status == TransactionStatus.IDLE:
            end()
            return
        WATCHDOG.arm(self.guard)
        try:
            end()
        finally:
            WATCHDOG.disarm(self.guard)


def bound_every_call(engine: Engine, *, seconds: float, on_timeout: Callable[[], None]) -> None:
    """Open ``engine``'s connections as BoundedConnections; a call may wait ``seconds``.

    ``on_timeout`` runs when a call or a connection attempt ran out of time;
    it must not wait on the database (the watchdog calls it holding its lock).
    The URL's ``connect_timeout`` bounds connecting.
    """

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):
        WATCHDOG.start()
        try:
            conn = BoundedConnection.connect(*cargs, **cparams)
        except psycopg.errors.ConnectionTimeout:
            on_timeout()
            raise
        conn.guard = CallGuard(conn.fileno(), seconds + GRACE_SECONDS, on_timeout)
        return conn
