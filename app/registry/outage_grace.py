"""Grace after the service's own outage: a daemon is not stale because *we* were down.

The service notes when it was last seen working (``service_liveness``): every
watcher tick, and about once a second per process of API traffic. If that
note is older than the TTL when work resumes, the service or its database was
unreachable for longer than a TTL, and daemons that kept trying did nothing
wrong. Each daemon that was alive when the lapse began (its own last heartbeat
within a TTL of it) gets one TTL of grace from now, the way Kubernetes' node
controller and Healthchecks.io hold back after their own outages.

Grace moves ``expires_at``, so the one expiry rule (expiry.py) covers it.
The rule is active while a watcher runs: its first tick creates the row, and
a watcher that stops cleanly deletes it (``sign_off``). Without a watcher
nobody is bound to refresh the note — API traffic does so only while daemons
send some — so an old note would show a quiet fleet as a dead service, grant
grace to daemons that really died and delay their alerts.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from app.models import daemons, service_liveness, service_outages
from app.registry import expiry
from app.store.backend import backend

ROW_ID = 1
CHECK_EVERY = timedelta(seconds=1)


def observe(
    conn: Connection, *, now: datetime, ttl: timedelta, create: bool = False
) -> int:
    """Note that the service works at ``now``; after a lapse, grant grace.

    Returns how many daemons got grace. ``create`` (the watcher) makes the
    row; API traffic only refreshes an existing one.
    """
    with conn.begin():
        last = conn.execute(
            select(service_liveness.c.last_alive_at).where(service_liveness.c.id == ROW_ID)
        ).scalar()
        if last is None:
            if create:
                backend(conn).upsert(conn, service_liveness, {"id": ROW_ID, "last_alive_at": now}, key="id")
            return 0
        if last >= now:
            return 0
        # Compare-and-set: of several processes noticing the same lapse, one grants grace.
        won = conn.execute(
            update(service_liveness)
            .where(service_liveness.c.id == ROW_ID, service_liveness.c.last_alive_at == last)
            .values(last_alive_at=now)
        ).rowcount
        if not won or now - last <= ttl:
            return 0
        return _grant_grace(conn, lapse_began=last, now=now, ttl=ttl)


def sign_off(conn: Connection) -> None:
    """A watcher stops on purpose: the silence that follows is not an outage.

    Another watcher still running makes the row again at its next tick.
    """
    with conn.begin():
        conn.execute(delete(service_liveness).where(service_liveness.c.id == ROW_ID))


def _grant_grace(conn: Connection, *, lapse_began: datetime, now: datetime, ttl: timedelta) -> int:
    # Grace is the TTL granted again from now, as if each daemon had just beaten.
    grace_ends = expiry.expires_at(now, ttl)
    graced = conn.execute(
        update(daemons)
        .where(
            expiry.stale_unrecorded(),
            # Alive by its own heartbeat when we lapsed; earlier grace does not count,
            # so a dead daemon is never carried from one lapse to the next.
            expiry.heartbeat_within_ttl(lapse_began, ttl),
            expiry.expired(grace_ends),
        )
        .values(expires_at=grace_ends)
    ).rowcount
    conn.execute(
        insert(service_outages).values(started_at=lapse_began, ended_at=now, daemons_graced=graced)
    )
    return graced


class Probe:
    """Per-process throttle: API traffic calls ``observe`` about once a second."""

    def __init__(self) -> None:
        self._next_check: datetime | None = None
        self._lock = threading.Lock()

    def due(self, now: datetime) -> bool:
        with self._lock:
            if self._next_check is not None and now < self._next_check:
                return False
            self._next_check = now + CHECK_EVERY
            return True
