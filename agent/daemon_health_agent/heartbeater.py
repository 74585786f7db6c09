"""The background thread that keeps one daemon registered and heartbeating.

Its one promise to the host program: the monitor being down, slow or wrong
never blocks, raises into or crashes the host. Everything that goes wrong is
logged (logger ``daemon_health_agent``) and retried.
"""

from __future__ import annotations

import atexit
import logging
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon_health_agent.client import (
    DEFAULT_TIMEOUT,
    AgentError,
    Client,
    NotRegistered,
    ServiceUnavailable,
)

log = logging.getLogger("daemon_health_agent")

STATUSES = ("healthy", "degraded", "unhealthy")
MAX_TASKS_PROCESSED = 2**53 - 1  # the service's limit (JavaScript-safe integers)
MAX_CURRENT_TASK = 256  # the service's limit; longer would get 400 on every beat
BACKOFF_BASE = 1.0  # first retry waits up to 1 s, then 2, 4, ... (full jitter)
MAX_BACKOFF = 30.0
INTERVAL_JITTER = 0.1  # beats at interval ± 10 %, so a fleet started together spreads out

StatusCallback = Callable[[], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Session:
    """One registration the service accepted: its ordinal, and until when it is surely live.

    ``live_until`` is on ``time.monotonic()``'s clock.
    """

    number: int
    live_until: float


class Heartbeater:
    """Register ``daemon_id`` at start, heartbeat until stopped, deregister at a clean stop.

    ``interval`` defaults to a third of the TTL, so two beats in a row may be
    lost before the service calls the daemon stale. The TTL is ``ttl_seconds``
    until the service's registration answer says its own (``ttlSeconds``).

    When an operator deregisters the daemon, the agent does not register it
    again: it logs why and keeps asking with heartbeats (which the service
    refuses) until this process restarts or an operator registers the daemon
    (``POST /api/daemon/register``); the next heartbeat then carries on.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        daemon_id: str,
        version: str,
        capabilities: Sequence[str],
        poll_interval_ms: int,
        status_callback: StatusCallback | None = None,
        ttl_seconds: float = 60,
        interval: float | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        if ttl_seconds <= 0 or (interval is not None and interval <= 0):
            raise ValueError("ttl_seconds and interval must be positive")
        self.daemon_id = daemon_id
        self.version = version
        self.capabilities = list(capabilities)
        self.poll_interval_ms = poll_interval_ms
        self._interval_given = interval is not None
        self._max_backoff_given = max_backoff
        self._pace(ttl_seconds, interval)
        self._client = Client(base_url, api_key, timeout=timeout)
        self._status_callback = status_callback
        self._tasks_processed = 0  # last good value, kept when the callback fails
        self._counters: dict[str, int | float] = {}  # last good tasksFailed / taskTimeMs, likewise
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._registered = threading.Event()
        # The service's view of us, for a Leader: which registration (session) it
        # accepted last, and until when (time.monotonic) it surely counts us live.
        self._session: Session | None = None
        self._sessions_started = 0
        self._deregistered_by_operator = False
        self._thread: threading.Thread | None = None

    def _pace(self, ttl_seconds: float, interval: float | None) -> None:
        self.ttl_seconds = ttl_seconds
        self.interval = ttl_seconds / 3 if interval is None else interval
        if self.interval >= ttl_seconds:
            log.warning(
                "heartbeat interval %.1fs is not shorter than the TTL %.1fs: %s will go stale "
                "between beats", self.interval, ttl_seconds, self.daemon_id,
            )
        # Retries never wait longer than one heartbeat interval: once the service
        # is back it hears from us within an interval, well inside the TTL (and
        # inside the grace the service grants after an outage of its own).
        self.max_backoff = min(self._max_backoff_given, self.interval)

    # -- host-facing API ---------------------------------------------------

    def start(self) -> Heartbeater:
        """Start heartbeating in a background thread; returns at once, whatever the service does."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            # A daemon thread: a host that forgets stop() can still exit; the
            # atexit hook below then deregisters it.
            self._thread = threading.Thread(
                target=self._run, name=f"daemon-health-agent[{self.daemon_id}]", daemon=True
            )
            log.info(
                "heartbeating %s to %s every ~%.1fs",
                self.daemon_id, self._client.base_url, self.interval,
            )
            self._thread.start()
            atexit.register(self._at_exit)
        return self

    def stop(self, deregister: bool = True) -> None:
        """Stop heartbeating; with ``deregister`` tell the service this is a planned stop.

        Takes at most about two request timeouts (plus a second) when the service
        does not answer, and about 1.5 s when it refuses connections.
        Without ``deregister`` the service sees the daemon go stale after the TTL,
        which is what a crash should look like.
        """
        with self._lock:
            thread, self._thread = self._thread, None
            atexit.unregister(self._at_exit)
        if thread is None:
            return
        self._stop.set()
        # Wait for an in-flight registration: a DELETE that overtook it would
        # leave a registered daemon that later goes stale (a false alarm).
        if thread is not threading.current_thread():  # stop() from the status_callback
            thread.join(self._client.timeout + 1)
        if deregister:
            self._session = None  # ends now, whatever the DELETE's answer
            self._deregister(deadline=time.monotonic() + 2 * self._client.timeout)
        self._registered.clear()
        log.info("stopped heartbeating %s", self.daemon_id)

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Block until the service has accepted the registration (True) or ``timeout`` passes."""
        return self._registered.wait(timeout)

    @property
    def registered(self) -> bool:
        return self._registered.is_set()

    @property
    def client(self) -> Client:
        """The service client, for helpers that speak for this daemon (Leader)."""
        return self._client

    @property
    def session(self) -> Session | None:
        """The session the service last accepted, None while it may not know us."""
        return self._session

    @property
    def deregistered_by_operator(self) -> bool:
        """True while the service says an operator deregistered this daemon (no re-registering)."""
        return self._deregistered_by_operator

    def __enter__(self) -> Heartbeater:
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        # Leaving on an error is a crash (let the service see it); a normal exit,
        # Ctrl-C or sys.exit(0) is a planned stop.
        self.stop(deregister=_is_clean(exc))

    # -- the thread ----------------------------------------------------------

    def _run(self) -> None:
        registered = False
        fresh = False  # registered, but no heartbeat accepted since
        failures = 0
        while not self._stop.is_set():
            try:
                if not registered:
                    self._register()
                    registered, fresh = True, True
                    # Beat at once: a registration cannot carry status or
                    # tasksProcessed, and the service resets them to healthy/0.
                    delay = 0.0
                else:
                    self._beat()
                    if self._deregistered_by_operator:
                        self._deregistered_by_operator = False
                        self._registered.set()
                        log.warning("an operator registered %s again; heartbeating", self.daemon_id)
                    fresh = False
                    delay = self._next_beat()
                if failures:
                    log.info("service reachable again after %d failed attempts", failures)
                failures = 0
            except NotRegistered as exc:
                self._registered.clear()
                self._session = None
                if exc.reason == "deregistered":
                    # A planned stop: registering again would undo it. Keep asking
                    # (a refused heartbeat changes nothing) until an operator lifts it.
                    if not self._deregistered_by_operator:
                        self._deregistered_by_operator = True
                        log.warning(
                            "an operator deregistered %s; not registering it again until this "
                            "process restarts or an operator registers it "
                            "(POST /api/daemon/register)", self.daemon_id,
                        )
                    registered, fresh, failures = True, False, 0
                    delay = self._next_beat()
                elif registered and not fresh:
                    # Expired (we were silent too long) or removed: register again, now.
                    log.warning("service does not know %s now; registering again", self.daemon_id)
                    registered, delay = False, 0.0
                else:
                    # A 404 from /register, or right after registering, means a wrong
                    # URL or a TTL shorter than one request: back off, don't spin.
                    registered = False
                    failures += 1
                    delay = self._backoff(failures)
                    log.error("%s (is the URL right?); retrying in %.1fs", exc, delay)
            except ServiceUnavailable as exc:
                failures += 1
                delay = self._backoff(failures, exc.retry_after)
                # A long outage should not flood the host's log: the first failure
                # and every tenth are warnings, the rest debug.
                level = logging.WARNING if failures % 10 == 1 else logging.DEBUG
                log.log(level, "%s; retrying in %.1fs (attempt %d)", exc, delay, failures)
            except AgentError as exc:
                # 400/401/...: the same request would fail again, so no hurry; keep
                # trying at the slowest rate in case an operator fixes the service side.
                failures += 1
                delay = self.max_backoff
                log.error("%s; retrying in %.1fs", exc, delay)
            except Exception:  # noqa: BLE001 - a bug here must not end the heartbeats
                failures += 1
                delay = self._backoff(failures)
                log.exception("unexpected error in the heartbeat thread; retrying in %.1fs", delay)
            self._stop.wait(delay)

    def _next_beat(self) -> float:
        return self.interval * random.uniform(1 - INTERVAL_JITTER, 1 + INTERVAL_JITTER)

    def _register(self) -> None:
        sent = time.monotonic()
        answer = self._client.register(
            self.daemon_id, self.version, self.capabilities, self.poll_interval_ms
        )
        ttl = answer.get("ttlSeconds")
        # A service that says its TTL sets the pace (an explicit interval stays as given).
        if type(ttl) in (int, float) and math.isfinite(ttl) and ttl > 0 and ttl != self.ttl_seconds:
            self._pace(float(ttl), self.interval if self._interval_given else None)
            log.info(
                "the service's TTL is %gs: heartbeating %s every ~%.1fs",
                ttl, self.daemon_id, self.interval,
            )
        # Registering ourselves ends a hold too: the service forgot the stop (its
        # history was pruned) and said "unknown", not "deregistered".
        self._deregistered_by_operator = False
        self._sessions_started += 1
        self._accepted(sent)
        self._registered.set()
        log.info("registered %s", self.daemon_id)

    def _beat(self) -> None:
        status, tasks, task = self._report()
        sent = time.monotonic()
        self._client.heartbeat(self.daemon_id, status, tasks, task, self._counters)
        self._accepted(sent)
        log.debug("heartbeat %s: %s, %d tasks", self.daemon_id, status, tasks)

    def _accepted(self, sent: float) -> None:
        # The service received it no earlier than we sent it, so its TTL runs at
        # least until ``sent`` + TTL by our clock (a lower bound, safe for a Leader).
        self._session = Session(self._sessions_started, sent + self.ttl_seconds)

    def _report(self) -> tuple[str, int, str | None]:
        """What to report, from the host's callback; never raises."""
        if self._status_callback is None:
            return "healthy", 0, None
        try:
            report = self._status_callback() or {}
            if not isinstance(report, Mapping):
                raise TypeError(f"status_callback must return a dict, not {type(report).__name__}")
        except Exception:  # noqa: BLE001 - the host's bug must not stop heartbeats
            # Alive (we are still beating) but unable to say how it is doing:
            # 'degraded' shows that without the 'unhealthy' alert, and the last
            # good task count is kept so the counter does not seem to reset.
            log.exception("status_callback failed; reporting %s as degraded", self.daemon_id)
            return "degraded", self._tasks_processed, None
        status = report.get("status", "healthy")
        if status not in STATUSES:
            log.warning("status_callback gave status %r; reporting degraded", status)
            status = "degraded"
        tasks = report.get("tasksProcessed", 0)
        if type(tasks) is int and 0 <= tasks <= MAX_TASKS_PROCESSED:  # not bool, not float
            self._tasks_processed = tasks
        else:
            log.warning("status_callback gave tasksProcessed %r; sending the last good one", tasks)
        task = report.get("currentTask")
        if task is not None:
            task = str(task)[:MAX_CURRENT_TASK]
        self._counters = self._task_counters(report)
        return status, self._tasks_processed, task

    def _task_counters(self, report: Mapping[str, Any]) -> dict[str, int | float]:
        """The optional ``tasksFailed`` and ``taskTimeMs`` the service would accept; others left out."""
        counters: dict[str, int | float] = {}
        failed = report.get("tasksFailed")
        if type(failed) is int and 0 <= failed <= self._tasks_processed:
            counters["tasksFailed"] = failed
        elif failed is not None:
            log.warning("status_callback gave tasksFailed %r; leaving it out", failed)
        time_ms = report.get("taskTimeMs")
        if type(time_ms) in (int, float) and math.isfinite(time_ms) and 0 <= time_ms <= MAX_TASKS_PROCESSED:
            counters["taskTimeMs"] = time_ms
        elif time_ms is not None:
            log.warning("status_callback gave taskTimeMs %r; leaving it out", time_ms)
        return counters

    def _backoff(self, failures: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            # The server said when; add a little so a fleet does not return in
            # step. Capped at the TTL: waiting longer makes us stale anyway, and a
            # broken header must not silence the agent for hours.
            return min(retry_after * random.uniform(1.0, 1 + INTERVAL_JITTER), self.ttl_seconds)
        # Exponential backoff with full jitter.
        return random.uniform(0, min(self.max_backoff, BACKOFF_BASE * 2 ** (failures - 1)))

    def _deregister(self, *, deadline: float) -> None:
        for attempt in range(3):
            try:
                self._client.deregister(self.daemon_id)
                log.info("deregistered %s", self.daemon_id)
                return
            except NotRegistered:
                log.info("%s was not registered; nothing to deregister", self.daemon_id)
                return
            except ServiceUnavailable as exc:
                wait = exc.retry_after if exc.retry_after is not None else 0.5 * (attempt + 1)
                # Only try again if that attempt could finish in time.
                if attempt == 2 or time.monotonic() + wait + self._client.timeout > deadline:
                    log.warning("could not deregister %s: %s", self.daemon_id, exc)
                    return
                time.sleep(wait)
            except AgentError as exc:
                log.warning("could not deregister %s: %s", self.daemon_id, exc)
                return

    def _at_exit(self) -> None:
        # An uncaught exception in the main program sets sys.last_value before
        # atexit runs: that is a crash, which the service should see as one.
        # (atexit cannot see sys.exit's code; hosts that care call stop() themselves.)
        crashed = getattr(sys, "last_value", None) is not None
        self.stop(deregister=not crashed)


def _is_clean(exc: BaseException | None) -> bool:
    if exc is None or isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, SystemExit):
        return exc.code in (0, None)
    return False
