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

Works over any ``limits`` storage (Redis, or memory for the per-process
fallback); its errors (StorageError) reach the caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem
from limits.storage import Storage

MAX_CLAIM = 50
CLAIM_SHARE = 100  # claim at most 1/CLAIM_SHARE of what the window has left
LEASE_SECONDS = 1.0
SWEEP_SECONDS = 10.0


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
