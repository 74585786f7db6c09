"""Every failure leaves as the contract's JSON: ``{"error": "..."}``.

Handlers sit on the app, not a blueprint, because routing errors (404, 405)
are raised before any blueprint is chosen.
"""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, current_app, g, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.http.context import request_globals, this_request
from app.registry.schemas import InvalidInput
from app.store.breaker import DatabaseUnavailable

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# The same header as WSGI names it: request.headers.get() raises and catches a
# KeyError for a missing header, and most requests send none.
_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DATABASE_RETRY_AFTER_SECONDS = 5


def error_response(status: int, message: str, **extra: object) -> Response:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def _http_message(exc: HTTPException) -> str:
    if exc.code == 404:
        return f"Not found: no endpoint at {request.method} {request.path}"
    if exc.code == 405:
        allowed = ", ".join(exc.valid_methods or [])  # type: ignore[attr-defined]
        return f"Method {request.method} is not allowed here; allowed: {allowed}"
    if exc.code == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return f"Request body is too large: the limit is {limit} bytes"
    return exc.description or exc.name


def handle_http_error(exc: HTTPException) -> Response:
    # Build on the exception's own response to keep headers such as Allow.
    response = exc.get_response()
    response.set_data(jsonify({"error": _http_message(exc)}).get_data())
    response.mimetype = "application/json"
    return response


def handle_invalid_input(exc: InvalidInput) -> Response:
    extra = {"details": exc.details} if exc.details else {}
    return error_response(400, exc.message, **extra)


def handle_database_unavailable(exc: DBAPIError) -> Response:
    # Only connection-level failures are "unavailable"; anything else is a bug.
    if not isinstance(exc, OperationalError) and not exc.connection_invalidated:
        return handle_unexpected(exc)
    log.warning("database unavailable (request %s): %s", request_id(), type(exc.orig).__name__)
    return database_unavailable()


def handle_pool_timeout(_exc: PoolTimeout) -> Response:
    log.warning("database unavailable (request %s): no pooled connection in time", request_id())
    return database_unavailable()


def database_unavailable(_exc: DatabaseUnavailable | None = None) -> Response:
    # Also the breaker's answer, unlogged: it comes at once, for every request
    # while the database is silent (the breaker logs its own changes).
    response = error_response(503, "Database unavailable; retry shortly")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error (request %s)", request_id())
    return error_response(500, "Internal server error", requestId=request_id())


def request_id() -> str:
    """The id this request is logged under: the client's X-Request-ID if safe, else a new one."""
    if "request_id" not in g:
        g.request_id = _supplied_request_id() or uuid.uuid4().hex
    return g.request_id


def _supplied_request_id() -> str | None:
    supplied = this_request().environ.get(_REQUEST_ID_ENVIRON)
    return supplied if supplied is not None and _SAFE_REQUEST_ID.match(supplied) else None


def _echo_request_id(response: Response) -> Response:
    # Echoed when the client sent one or the request was logged under one; an
    # id made for a request that left no log line would match nothing.
    rid = request_globals().get("request_id") or _supplied_request_id()
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


def init_app(app: Flask) -> None:
    app.after_request(_echo_request_id)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(InvalidInput, handle_invalid_input)
    app.register_error_handler(DBAPIError, handle_database_unavailable)
    app.register_error_handler(PoolTimeout, handle_pool_timeout)
    app.register_error_handler(DatabaseUnavailable, database_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
