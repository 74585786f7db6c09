"""What a request (or a command) takes from its app: settings, one reading of the clock, a connection."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Flask, current_app, g
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from app.clock import Clock, SystemClock
from app.store.engine import Database
from config import Settings

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


def settings(app: Flask | None = None) -> Settings:
    return (app or current_app).extensions[SETTINGS_KEY]


def clock(app: Flask | None = None) -> Clock:
    return (app or current_app).extensions[CLOCK_KEY]


def database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[DATABASE_KEY]


def now() -> datetime:
    """The clock, read once per request (or command): every rule it runs sees the same moment."""
    reading = g.get("now")  # one lookup through Flask's context-local g on the usual path
    if reading is None:
        reading = g.now = clock().now()
    return reading


def _forget_now() -> None:
    g.pop("now", None)


def connection() -> Connection:
    """The request's connection, opened on first use and closed at teardown."""
    conn = g.get("db_connection")
    if conn is None:
        db = database()
        db.breaker.check()  # a database known not to answer gets no new request
        conn = g.db_connection = db.engine.connect()
    return conn


def _close_connection(_exc: BaseException | None) -> None:
    conn = g.pop("db_connection", None)
    if conn is not None:
        try:
            conn.close()
        except DBAPIError as exc:
            # The answer is made; only ending the transaction failed (the
            # database went away meanwhile), and the connection is discarded.
            log.warning("database lost while closing a request's connection: %s",
                        type(exc.orig).__name__)
