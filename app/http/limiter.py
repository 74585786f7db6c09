"""Rate limits on every keyed endpoint, enforced by Flask-Limiter.

One shared limit covers every keyed blueprint (app/http/auth.py registers them), in
one of three buckets chosen per request:

- a valid daemon key: its own bucket, DAEMON_RATE_LIMIT per key, wherever its
  daemons are, so daemons behind one NAT do not share one address's limit;
- a valid read or metrics key: READ_RATE_LIMIT per client address;
- the admin key, and every request without a valid key: ADMIN_RATE_LIMIT per
  client address, so guessing keys spends the same budget as using one.

Counting is Flask-Limiter's fixed window in RATELIMIT_STORAGE_URI. A Redis URL
is served by the claims storage (app/store/rate_leases.py, scheme ``claims+redis``),
which counts a busy client's requests a few per Redis call and exactly below
200 per window. While the storage is unreachable Flask-Limiter counts per
process in memory (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED) and asks the storage
again with a growing pause; both changes are logged by its ``flask-limiter``
logger, which wsgi.py sends to gunicorn's log.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from flask import Blueprint, Flask, Response
from flask_limiter import Limiter, RateLimitExceeded, RouteLimit

from app.store import rate_leases
from app.http.auth import DAEMON, METRICS, READ, current_caller
from app.http.context import this_request
from app.http.errors import error_response

LOGGER_NAME = "flask-limiter"
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
# Which bucket (limit and scope) each kind of caller counts in; None: no valid key.
BUCKETS = {DAEMON: "daemon", READ: "read", METRICS: "read"}
ADMIN_BUCKET = "admin"


def _bucket() -> str:
    return BUCKETS.get(current_caller().kind, ADMIN_BUCKET)  # type: ignore[arg-type]


def _bucket_key() -> str:
    caller = current_caller()
    if caller.kind == DAEMON:
        return f"key-{caller.fingerprint}"
    # REMOTE_ADDR, which ProxyFix has already set from X-Forwarded-For
    # when (and only when) proxies are trusted.
    return this_request().remote_addr or "unknown"


@dataclasses.dataclass(unsafe_hash=True, kw_only=True)
class ParsedOnceLimit(RouteLimit):
    """Flask-Limiter's blueprint limit, with each limit string parsed once, not per request.

    Flask-Limiter reads a limit definition by iterating it, on every request: it
    calls the limit's provider, parses the string it returns and builds the
    limits from it. The string is one of the three buckets' settings, and what
    is built from it depends on nothing else, so the limits are kept by string.
    Under gunicorn this saves about 35 us of a heartbeat's worker CPU, a quarter
    of what Flask-Limiter costs it (README, Performance).
    """

    _built: dict[str, tuple[Any, ...]] = dataclasses.field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def __iter__(self) -> Iterator[Any]:
        limit = self.limit_provider() if callable(self.limit_provider) else self.limit_provider
        built = self._built.get(limit)
        if built is None:
            # RouteLimit's own iteration asks the provider again, in this same request.
            built = self._built[limit] = tuple(super().__iter__())
        return iter(built)


class _PerRequestBreaches(logging.Filter):
    """Drop Flask-Limiter's line for each refused request: logs grow with events, not traffic."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.msg.startswith("ratelimit ")


def _too_many_requests(limiter: Limiter, exc: RateLimitExceeded) -> Response:
    response = error_response(429, f"Rate limit exceeded ({exc.limit.limit}); retry later")
    current = limiter.current_limit
    # window[0]: when the window ends, to the fraction (RequestLimit.reset_at adds a second).
    reset_at = current.window[0] if current is not None else time.time() + exc.limit.limit.get_expiry()
    # Whole seconds, rounded up: never tells a client to come back too early.
    response.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
    return response


def storage_uri(uri: str) -> str:
    """The storage Flask-Limiter uses for RATELIMIT_STORAGE_URI: Redis through claims."""
    return rate_leases.CLAIMS_PREFIX + uri if uri.startswith(REDIS_SCHEMES) else uri


def init_app(app: Flask) -> Callable[[Blueprint], None]:
    """Install Flask-Limiter on ``app``; returns what puts the shared limit on a blueprint."""
    config = app.config
    limiter = Limiter(
        key_func=_bucket_key, storage_uri=storage_uri(config["RATELIMIT_STORAGE_URI"])
    )
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, partial(_too_many_requests, limiter))
    log = logging.getLogger(LOGGER_NAME)
    log.setLevel(logging.INFO)  # "Rate limit storage recovered" is an INFO line
    if not any(isinstance(f, _PerRequestBreaches) for f in log.filters):
        log.addFilter(_PerRequestBreaches())
    limits = {
        ADMIN_BUCKET: config["ADMIN_RATE_LIMIT"],
        "daemon": config["DAEMON_RATE_LIMIT"],
        "read": config["READ_RATE_LIMIT"],
    }
    # What limiter.shared_limit() returns, built here to be the class above.
    return ParsedOnceLimit(
        limit_provider=lambda: limits[_bucket()],
        limiter=limiter,
        key_function=_bucket_key,
        shared=True,
        scope=lambda _endpoint: _bucket(),
        override_defaults=True,
    )
