"""Fixed-window counting in shared storage, without a round trip for every busy client's request.

Counting each request in Redis costs a network round trip: on the heartbeat it
was the largest cost the service adds to the database work (about 0.05 ms of
worker CPU and as much again in Redis, bench/run.py --profile). So a process
that sees one client often claims several of its window's requests at once
(INCRBY n) and counts them down locally, the way quota servers hand out leases:

- A client seen once in a while is counted one request at a time, as without
  leases. Each time a process spends its whole claim within ``LEASE_SECONDS``,
  its next claim for that client doubles: 1, 2, 4 ... up to ``MAX_CLAIM``.
- A claim is at most 1% of what the window had left when this process last
  counted: a limit below 200 per window is always counted one by one, exactly.
- Claimed requests are spent for at most ``LEASE_SECONDS`` and never after the
  window ends, so no process serves more than the window allows.
- The price: requests a process claimed but did not spend are counted without
  being served. A client near its limit is refused at most 1% of the limit
  early for each process that holds a claim for it.

``LeasedWindows`` works over any ``limits`` storage. ``ClaimingRedisStorage``
is that counting as a ``limits`` storage of its own, registered under the
``claims+redis://`` scheme (also ``claims+rediss://``, ``claims+redis+unix://``)
for Flask-Limiter's fixed-window strategy; app/http/limiter.py hands it the
service's ``redis://`` URL. Its errors reach Flask-Limiter, which then counts
in memory until ``check()`` finds Redis again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from limits import RateLimitItem
from limits.limits import GRANULARITIES
from limits.storage import Storage, storage_from_string
from redis import ConnectionPool, RedisError

MAX_CLAIM = 50
CLAIM_SHARE = 100  # claim at most 1/CLAIM_SHARE of what the window has left
LEASE_SECONDS = 1.0
SWEEP_SECONDS = 10.0
CLAIMS_PREFIX = "claims+"
# A dead Redis must answer fast: one second to connect or to reply. One
# connection per process: redis-py's pool would check a pooled connection's
# health with extra system calls before every command.
REDIS_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1, "single_connection_client": True}


@dataclass(slots=True)
class _Lease:
    """What this process knows of one key's current window (times are monotonic)."""

    window_ends: float  # the earliest the window can end; if not known, when to forget it
    retry_after_end: float  # the latest it can end: what a refused client is told
    ends_known: bool
    claimed: int  # size of the last claim
    claimed_at: float
    cap: int  # the most the next claim may be: 1% of what the window had left
    tokens: int  # claimed and not yet spent


class LeasedWindows:
    def __init__(self, storage: Storage, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self._monotonic = monotonic
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def hit(self, limit: RateLimitItem, key: str) -> float | None:
        """Count one request under ``limit``: None if allowed, else seconds until its window ends."""
        now = self._monotonic()
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and now >= lease.window_ends:
                lease = None
            # Within a second of its claim (and, as above, of its window): busy,
            # so spend a token or claim more than before.
            busy = lease is not None and now < lease.claimed_at + LEASE_SECONDS
            if busy and lease.tokens:
                lease.tokens -= 1
                return None
            claim = min(2 * lease.claimed, lease.cap) if busy else 1
        # Outside the lock: other threads keep spending while this one waits on storage.
        period = limit.get_expiry()
        count = self.storage.incr(key, period, amount=claim)
        after = self._monotonic()
        granted = min(claim, limit.amount - (count - claim))
        # The window's end, as the earliest and the latest it can be: tokens are
        # spent only before the earliest, a refused client waits for the latest.
        ends: tuple[float, float] | None
        if count == claim:  # this claim opened the window, between ``now`` and ``after``
            ends = now + period, after + period
        elif lease is not None and lease.ends_known and after < lease.window_ends:
            ends = lease.window_ends, lease.retry_after_end
        elif granted != 1:  # needed, to keep tokens or to say when to retry: ask
            ends = self._ends_from_storage(key, period)
        else:
            ends = None
        window_ends, retry_after_end = ends if ends is not None else (now + period, now + period)
        with self._lock:
            self._sweep(now)
            # Two threads claiming at once: the later one's lease wins and the
            # other's unspent tokens are dropped, which only ever refuses early.
            self._leases[key] = _Lease(
                window_ends=window_ends,
                retry_after_end=retry_after_end,
                ends_known=ends is not None,
                claimed=claim,
                claimed_at=now,
                cap=max(1, min(MAX_CLAIM, (limit.amount - count) // CLAIM_SHARE)),
                tokens=max(0, granted - 1),
            )
        return None if granted >= 1 else max(0.0, retry_after_end - after)

    def window_ends(self, key: str) -> float | None:
        """When ``key``'s window ends (monotonic, the latest it can), if this process knows."""
        with self._lock:
            lease = self._leases.get(key)
            return lease.retry_after_end if lease is not None and lease.ends_known else None

    def _ends_from_storage(self, key: str, period: int) -> tuple[float, float]:
        before = self._monotonic()
        # Redis gives the time left in whole seconds (TTL, rounded to the nearest):
        # spend tokens as if a second less were left, tell clients half a second more.
        left = self.storage.get_expiry(key) - time.time()
        return before + max(0.0, left - 1.0), self._monotonic() + min(left + 0.5, period)

    def _sweep(self, now: float) -> None:
        # Forget ended windows, so one-off client addresses do not pile up.
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        for key in [k for k, lease in self._leases.items() if now >= lease.window_ends]:
            del self._leases[key]


class ClaimingRedisStorage(Storage):
    """Redis through ``LeasedWindows``: a ``limits`` storage for the fixed-window strategy.

    ``incr`` answers whether the request is within its limit, not the window's
    exact count: ``limit`` if served, ``limit + 1`` if refused (the strategy
    only compares the two). ``get`` asks Redis for the true count. The limit is
    read from the key, which ``limits`` ends with ``/<amount>/<multiples>/<granularity>``.
    """

    STORAGE_SCHEME = ["claims+redis", "claims+rediss", "claims+redis+unix"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        redis_uri = uri.removeprefix(CLAIMS_PREFIX)
        # A malformed URL stops the boot, not every request.
        ConnectionPool.from_url(redis_uri.replace("redis+unix://", "unix://", 1))
        self._connect = partial(
            storage_from_string, redis_uri, wrap_exceptions=True, **{**REDIS_OPTIONS, **options}
        )
        self._windows: LeasedWindows | None = None
        self._limits: dict[str, RateLimitItem] = {}
        self._lock = threading.Lock()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return RedisError

    def windows(self) -> LeasedWindows:
        # Connected on first use: in each gunicorn worker after the fork, and
        # never by CLI commands that do not serve requests.
        with self._lock:
            if self._windows is None:
                self._windows = LeasedWindows(self._connect())
            return self._windows

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        limit = self._limit_in(key)
        if amount != 1:  # not used by this service; counted exactly, without claims
            return self.windows().storage.incr(key, expiry, amount=amount)
        return limit.amount if self.windows().hit(limit, key) is None else limit.amount + 1

    def get(self, key: str) -> int:
        return self.windows().storage.get(key)

    def get_expiry(self, key: str) -> float:
        windows = self.windows()
        ends = windows.window_ends(key)
        if ends is None:
            return windows.storage.get_expiry(key)
        return time.time() + max(0.0, ends - time.monotonic())

    def check(self) -> bool:
        try:
            return self.windows().storage.check()
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False

    def reset(self) -> int | None:
        return self.windows().storage.reset()

    def clear(self, key: str) -> None:
        self.windows().storage.clear(key)

    def _limit_in(self, key: str) -> RateLimitItem:
        _, amount, multiples, granularity = key.rsplit("/", 3)
        suffix = f"{amount}/{multiples}/{granularity}"
        limit = self._limits.get(suffix)
        if limit is None:
            limit = GRANULARITIES[granularity](int(amount), int(multiples))
            self._limits[suffix] = limit
        return limit
