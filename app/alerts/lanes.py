"""One lane of sender threads per receiver (webhook URL or channel), so a slow one delays only itself.

A shared pool waited on as a whole lets one receiver that answers at the last
second of its timeout hold up every other receiver's alerts, tick after tick.
Here each receiver has its own few threads and its own bound on deliveries in
flight; the watcher hands over work and moves on, and each delivery is settled
the moment its answer arrives.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

THREADS_PER_URL = 4
# Claimed but unsettled deliveries per URL. The last in a full lane waits at most
# DEPTH / THREADS webhook timeouts (5 x 5 s by default), well inside the outbox lease.
DEPTH_PER_URL = 20


class Lanes:
    def __init__(self, *, threads: int = THREADS_PER_URL, depth: int = DEPTH_PER_URL) -> None:
        self._threads = threads
        self._depth = depth
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._in_flight: Counter[str] = Counter()
        self._idle = threading.Condition()

    def room(self, url: str) -> int:
        """How many more deliveries to ``url`` may be claimed now."""
        with self._idle:
            return max(0, self._depth - self._in_flight[url])

    def send(self, url: str, job: Callable[[], None]) -> None:
        """Run ``job`` (deliver and settle one alert) in ``url``'s lane."""
        with self._idle:
            self._in_flight[url] += 1
            pool = self._pools.get(url)
            if pool is None:
                pool = ThreadPoolExecutor(self._threads, thread_name_prefix="alert-lane")
                self._pools[url] = pool
        pool.submit(self._run, url, job)

    def _run(self, url: str, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a bug must not kill the lane; the lease brings the delivery back
            log.exception("alert delivery to %s failed unexpectedly", url)
        finally:
            with self._idle:
                self._in_flight[url] -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every delivery handed over has been settled."""
        with self._idle:
            return self._idle.wait_for(lambda: not any(self._in_flight.values()), timeout)

    def close(self) -> None:
        """Finish what is in flight (each is bounded by the webhook timeout), then stop."""
        for pool in list(self._pools.values()):
            pool.shutdown(wait=True)

    def __enter__(self) -> Lanes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
