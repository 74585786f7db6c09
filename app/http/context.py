"""What a request (or a command) takes from its app: settings, one reading of the clock, a connection.

Flask's ``g``, ``request`` and ``current_app`` are werkzeug proxies: every
attribute read through one looks the context up again and reaches the object
through ``__getattr__``, about 0.8 us a read. ``_get_current_object()``, the
proxies' documented way to the object itself, costs 0.1 us, and reads of the
object after that cost what any attribute read costs. A heartbeat made some
thirty proxy reads in the service's own code; the functions below hand out the
objects, so code on a request's path takes each once (README, Performance).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from flask import Flask, Request, current_app, g, request
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from app.clock import Clock, SystemClock
from app.store.engine import Database
from config import Settings

if TYPE_CHECKING:
    from flask.ctx import _AppCtxGlobals

SETTINGS_KEY = "daemon_health_settings"
CLOCK_KEY = "daemon_health_clock"
DATABASE_KEY = "daemon_health_db"

log = logging.getLogger(__name__)


def init_app(app: Flask, settings: Settings, clock: Clock | None) -> None:
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[CLOCK_KEY] = clock or SystemClock()
    app.extensions[DATABASE_KEY] = Database(settings.database_url, timeout=settings.database_timeout_seconds)
    # A request inside an app context someone else pushed shares its g: forget its reading.
    app.before_request_funcs.setdefault(None, []).insert(0, _forget_now)
    app.teardown_appcontext(_close_connection)


def this_app() -> Flask:
    """The app serving this request or command (current_app's object)."""
    return current_app._get_current_object()  # type: ignore[attr-defined]


def this_request() -> Request:
    """The request being served (request's object)."""
    return request._get_current_object()  # type: ignore[attr-defined]


def request_globals() -> _AppCtxGlobals:
    """This app context's g (g's object)."""
    return g._get_current_object()  # type: ignore[attr-defined]


def settings(app: Flask | None = None) -> Settings:
    return (app or this_app()).extensions[SETTINGS_KEY]


def clock(app: Flask | None = None) -> Clock:
    return (app or this_app()).extensions[CLOCK_KEY]


def database(app: Flask | None = None) -> Database:
    return (app or this_app()).extensions[DATABASE_KEY]


def now() -> datetime:
    """The clock, read once per request (or command): every rule it runs sees the same moment."""
    scope = request_globals()
    reading = scope.get("now")
    if reading is None:
        reading = scope.now = clock().now()
    return reading


def _forget_now() -> None:
    request_globals().pop("now", None)


def connection() -> Connection:
    """The request's connection, opened on first use and closed at teardown."""
    scope = request_globals()
    conn = scope.get("db_connection")
    if conn is None:
        db = database()
        db.breaker.check()  # a database known not to answer gets no new request
        conn = scope.db_connection = db.engine.connect()
    return conn


def _close_connection(_exc: BaseException | None) -> None:
    conn = request_globals().pop("db_connection", None)
    if conn is not None:
        try:
            conn.close()
        except DBAPIError as exc:
            # The answer is made; only ending the transaction failed (the
            # database went away meanwhile), and the connection is discarded.
            log.warning("database lost while closing a request's connection: %s",
                        type(exc.orig).__name__)
