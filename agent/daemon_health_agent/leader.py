"""Leader election on a service lease: run a callback only while this daemon holds the lease.

The service keeps a lease exactly as long as the session of the daemon holding
it, so the Leader sends no renewals of its own: the Heartbeater's beats keep
it. Every ``interval`` the Leader asks for the lease (which, for its holder,
only confirms it), then calls ``callback(token)``. It stops calling and says so
through ``on_lost(token, reason)`` as soon as it knows the lease is gone: the
service answers 409 (another daemon holds it) or 404 (our session ended), the
lease came back with another token, or our own heartbeats stopped reaching the
service long enough that the TTL may have run out.

That last check is local and conservative: a heartbeat sent at ``t`` keeps
the session live at least until ``t`` + TTL, so the Leader stops by then even
when it cannot reach the service. It cannot know of a session ended by someone
else (an operator's DELETE) before its next request; that is what the token is
for: hand it to whatever the leader writes to, and let that refuse a token
lower than the highest it has seen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from daemon_health_agent.client import AgentError, LeaseHeld, NotRegistered
from daemon_health_agent.heartbeater import Heartbeater, Session

log = logging.getLogger("daemon_health_agent")

LostCallback = Callable[[int, str], None]


class Leader:
    """Call ``callback(token)`` every ``interval`` s while ``heartbeater``'s daemon holds ``lease``.

    A standby asks for the lease every ``retry_interval`` seconds (default:
    ``interval``), so it takes over at most that long after the holder's
    session ends. ``on_lost(token, reason)`` is called once per lost term,
    and at ``stop()`` (reason ``"stopped"``), which releases the lease.
    Both callbacks run on the Leader's thread: keep them short.
    """

    def __init__(
        self,
        heartbeater: Heartbeater,
        lease: str,
        callback: Callable[[int], Any],
        *,
        interval: float | None = None,
        retry_interval: float | None = None,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.lease = lease
        self.interval = heartbeater.interval if interval is None else interval
        self.retry_interval = self.interval if retry_interval is None else retry_interval
        if self.interval <= 0 or self.retry_interval <= 0:
            raise ValueError("interval and retry_interval must be positive")
        self._heartbeater = heartbeater
        self._callback = callback
        self._on_lost = on_lost
        self._token: int | None = None
        self._term_session: Session | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> int | None:
        """The fencing token of the current term; None while not leading."""
        return self._token

    def start(self) -> Leader:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"daemon-health-leader[{self.lease}]", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop competing; a leader releases the lease at once so a standby need not wait a TTL."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._token is not None:
            try:
                self._heartbeater.client.release_lease(self.lease, self._heartbeater.daemon_id)
            except AgentError as exc:
                log.warning("could not release lease %s: %s", self.lease, exc)
            self._lose("stopped")

    def __enter__(self) -> Leader:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            leading = self._step()
            self._stop.wait(self.interval if leading else self.retry_interval)

    def _step(self) -> bool:
        """Ask for the lease and, while it is ours, call the callback once; whether we lead."""
        session = self._heartbeater.session
        if self._token is not None and not _same_live_session(self._term_session, session):
            self._lose("this daemon's heartbeats stopped reaching the service")
        if session is None:
            return False  # not registered (yet): nothing to ask for
        try:
            lease = self._heartbeater.client.acquire_lease(self.lease, self._heartbeater.daemon_id)
        except LeaseHeld as exc:
            if self._token is not None:
                self._lose(f"lease held by {exc.holder}")
            return False
        except NotRegistered:
            if self._token is not None:
                self._lose("the service ended this daemon's session")
            return False
        except AgentError as exc:
            # Unreachable or refusing: still leading while the session surely lives.
            log.debug("could not confirm lease %s: %s", self.lease, exc)
            return self._token is not None and self._call_while_live()
        token = lease["token"]
        if self._token is not None and token != self._token:
            self._lose("the lease changed hands")
        if self._heartbeater.session != session:
            return False  # registered again meanwhile: that answer may be the old session's
        if self._token is None:
            log.info("%s leads %s with token %d", self._heartbeater.daemon_id, self.lease, token)
            self._token = token
        self._term_session = session
        return self._call_while_live()

    def _call_while_live(self) -> bool:
        if not _same_live_session(self._term_session, self._heartbeater.session):
            self._lose("this daemon's heartbeats stopped reaching the service")
            return False
        token = self._token
        assert token is not None
        try:
            self._callback(token)
        except Exception:  # noqa: BLE001 - the host's bug must not end the election
            log.exception("leader callback for %s failed", self.lease)
        return True

    def _lose(self, reason: str) -> None:
        token, self._token, self._term_session = self._token, None, None
        if token is None:
            return
        log.warning(
            "%s lost lease %s (token %d): %s", self._heartbeater.daemon_id, self.lease, token, reason
        )
        if self._on_lost is not None:
            try:
                self._on_lost(token, reason)
            except Exception:  # noqa: BLE001
                log.exception("on_lost callback for %s failed", self.lease)


def _same_live_session(term: Session | None, now: Session | None) -> bool:
    """Whether the session a term began in is still the heartbeater's and surely live."""
    return (
        term is not None
        and now is not None
        and now.number == term.number
        and time.monotonic() < now.live_until
    )
