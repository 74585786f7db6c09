"""Rate limiting shared by every admin endpoint, counted per client address.

It runs as an app-level ``before_request`` hook, so it counts before the
blueprint's authentication: guessing keys is throttled like any other call.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, Flask, Response, current_app
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address

from app.errors import error_response


def _admin_limit() -> str:
    return current_app.config["ADMIN_RATE_LIMIT"]


def _too_many_requests(limit: RequestLimit) -> Response:
    response = error_response(429, f"Rate limit exceeded ({limit.limit}); retry later")
    response.headers["Retry-After"] = str(max(1, math.ceil(limit.reset_at - time.time())))
    return response


def init_app(app: Flask, *blueprints: Blueprint) -> Limiter:
    # Only the 429 says when to come back (Flask-Limiter's own headers would
    # put a Retry-After on every successful response too).
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    # A dead Redis must not take the service down or hang requests: fall back to
    # per-process counters (logged by Flask-Limiter) and retry Redis later.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    if app.config["RATELIMIT_STORAGE_URI"].startswith(("redis://", "rediss://")):
        app.config.setdefault(
            "RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1}
        )
    # get_remote_address reads REMOTE_ADDR, which ProxyFix has already set
    # from X-Forwarded-For when (and only when) proxies are trusted.
    limiter = Limiter(get_remote_address, app=app)
    shared = limiter.shared_limit(_admin_limit, scope="admin", on_breach=_too_many_requests)
    for blueprint in blueprints:
        shared(blueprint)
    return limiter
