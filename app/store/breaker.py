"""The circuit breaker: once the database is known not to answer, fail fast.

Without it every request would wait the full timeout again (and the clients
queued behind a busy sync worker wait for all of those), however long the
database stays silent. One breaker per process and database: a call that ran
past its deadline opens it; while open, requests get 503 at once, without
touching the database, and one background thread probes it (each probe bounded
like any call) every ``PROBE_INTERVAL_SECONDS``, closing the breaker on the
first answer. No request ever waits on a probe, and recovery does not depend
on traffic arriving.

Only slow failures open it: a refused connection already fails fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 0.25


class DatabaseUnavailable(Exception):
    """Raised instead of touching a database that is known not to answer."""


class CircuitBreaker:
    def __init__(self, probe: Callable[[], None], *,
                 interval: float = PROBE_INTERVAL_SECONDS) -> None:
        self._probe = probe
        self._interval = interval
        self._open = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._open

    def check(self) -> None:
        """Raise DatabaseUnavailable while the breaker is open (the hot path: one read)."""
        if self._open:
            raise DatabaseUnavailable

    def trip(self) -> None:
        """The database did not answer in time: open, and probe until it does."""
        with self._lock:
            if self._open:
                return
            self._open = True
        log.warning("database not answering: failing fast until it does")
        threading.Thread(target=self._probe_until_answered, name="db-probe", daemon=True).start()

    def _probe_until_answered(self) -> None:
        while True:
            time.sleep(self._interval)
            try:
                self._probe()
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                log.debug("database probe failed: %s", type(exc).__name__)
                continue
            with self._lock:
                self._open = False
            log.warning("database answers again: serving requests")
            return
