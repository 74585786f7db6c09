"""Rate limiting shared by every admin endpoint, counted per client address.

It runs as an app-level ``before_request`` hook, so it counts before the
blueprint's authentication: guessing keys is throttled like any other call.

The counting is fixed windows in the ``limits`` library's storage (Redis, or
memory), claimed a few requests at a time (app/rate_leases.py). Flask-Limiter,
which wraps ``limits``, cost about 0.25 ms of CPU per request on the heartbeat
path (re-resolving and filtering its limit objects every time) for features
this service does not use, and its storage-fallback message went to a logger
with no handler. What it did for us is here: one shared limit, a 429 JSON with
``Retry-After``, and a fallback to per-process counters while the shared
storage is unreachable.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial

from flask import Blueprint, Flask, Response, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from redis import ConnectionPool, RedisError

from app.http.errors import error_response
from app.rate_leases import LeasedWindows

SCOPE = "admin"
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
# A dead Redis must answer fast: one second to connect or to reply. One
# connection per process: redis-py's pool would check a pooled connection's
# health with extra system calls before every command.
REDIS_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1, "single_connection_client": True}
# While on the fallback, each process asks the shared storage again after 1 s,
# then 2, 4 and at most 8 s: a blackholed Redis costs one request in 8 s a
# one-second wait, and a returning one is used again within 8 s.
FIRST_RETRY_SECONDS = 1.0
LAST_RETRY_SECONDS = 8.0

log = logging.getLogger(__name__)


class AdminRateLimit:
    """The admin limit of one process: shared storage first, memory while it is down."""

    def __init__(
        self,
        limits: Iterable[RateLimitItem],
        connect: Callable[[], Storage],
        *,
        key_prefix: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = tuple(limits)
        self.key_prefix = key_prefix
        self._connect = connect
        self._shared: LeasedWindows | None = None
        self._fallback: LeasedWindows | None = None
        self._monotonic = monotonic
        self._retry_at = 0.0
        self._retry_delay = FIRST_RETRY_SECONDS
        self._lock = threading.Lock()

    @property
    def on_fallback(self) -> bool:
        return self._fallback is not None

    def breached(self, address: str) -> tuple[RateLimitItem, int] | None:
        """Count one request from ``address``; the limit it broke and seconds to wait, or None."""
        identifiers = (self.key_prefix, address, SCOPE)
        try:
            return _first_breach(self._counter(), self.limits, identifiers)
        except StorageError as exc:
            return _first_breach(self._fall_back(exc), self.limits, identifiers)

    def _counter(self) -> LeasedWindows:
        fallback = self._fallback
        if fallback is None:
            return self._shared_counter()
        with self._lock:
            if self._monotonic() < self._retry_at:
                return fallback
            # One thread asks; the others stay on the fallback meanwhile instead
            # of queueing behind it for a dead Redis' one-second timeout.
            self._retry_at = self._monotonic() + LAST_RETRY_SECONDS
        if self._shared_reachable():
            with self._lock:
                self._fallback = None
                self._retry_delay = FIRST_RETRY_SECONDS
            log.warning("Rate limit storage is reachable again: the limit is shared once more")
            return self._shared_counter()
        with self._lock:
            self._retry_delay = min(self._retry_delay * 2, LAST_RETRY_SECONDS)
            self._retry_at = self._monotonic() + self._retry_delay
        return fallback

    def _shared_counter(self) -> LeasedWindows:
        # Connected on first use: in each gunicorn worker after the fork, and
        # never by CLI commands that do not serve requests.
        if self._shared is None:
            try:
                self._shared = LeasedWindows(self._connect(), monotonic=self._monotonic)
            except RedisError as exc:
                raise StorageError(exc) from exc
        return self._shared

    def _shared_reachable(self) -> bool:
        try:
            return self._shared_counter().storage.check()
        except StorageError:
            return False

    def _fall_back(self, exc: StorageError) -> LeasedWindows:
        with self._lock:
            if self._fallback is None:
                self._fallback = LeasedWindows(MemoryStorage(), monotonic=self._monotonic)
                log.warning(
                    "Rate limit storage unreachable (%s): counting per process until it is back",
                    exc,
                )
            self._retry_at = self._monotonic() + self._retry_delay
            return self._fallback


def _first_breach(
    counter: LeasedWindows, limits: tuple[RateLimitItem, ...], identifiers: tuple[str, ...]
) -> tuple[RateLimitItem, int] | None:
    for limit in limits:
        wait = counter.hit(limit, limit.key_for(*identifiers))
        if wait is not None:
            return limit, max(1, math.ceil(wait))
    return None


def _too_many_requests(limit: RateLimitItem, retry_after: int) -> Response:
    response = error_response(429, f"Rate limit exceeded ({limit}); retry later")
    response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask, *blueprints: Blueprint) -> None:
    uri = app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith(REDIS_SCHEMES):
        # A malformed URL stops the boot, not every request.
        ConnectionPool.from_url(uri.replace("redis+unix://", "unix://", 1))
        connect = partial(storage_from_string, uri, wrap_exceptions=True, **REDIS_OPTIONS)
    else:
        storage = storage_from_string(uri, wrap_exceptions=True)
        connect = lambda: storage  # noqa: E731
    rate_limit = AdminRateLimit(
        parse_many(app.config["ADMIN_RATE_LIMIT"]),
        connect,
        key_prefix=app.config["RATELIMIT_KEY_PREFIX"],
    )
    limited = frozenset(blueprint.name for blueprint in blueprints)

    def check() -> Response | None:
        if request.blueprint not in limited:
            return None
        # REMOTE_ADDR, which ProxyFix has already set from X-Forwarded-For
        # when (and only when) proxies are trusted.
        breach = rate_limit.breached(request.remote_addr or "unknown")
        return _too_many_requests(*breach) if breach is not None else None

    app.before_request(check)
