"""The TTL rule, in one place: when a daemon counts as gone.

Every register and heartbeat sets ``expires_at`` to the service's receipt
time plus the TTL; outage grace may push it to ``now + TTL`` (see
outage_grace). A daemon is *live* while ``expires_at >= now`` and *expired*
once ``expires_at < now`` — or once a watcher has written its expiry to the
history, whatever a request's clock says: a heartbeat that read the clock
before the watcher did, and reaches the row after it, must not bring back a
daemon the history already counts as down. An expired daemon stands for the
specification's KV entry whose TTL ran out, so every rule treats it as gone
until /health reaps it and reports it stale once. Every query, Python or SQL, uses the expressions
below; the SQL views of the history (daemon_timeline, migrations 0002 and
0004) start a daemon's 'down' span at the same ``expires_at``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BindParameter, ColumnElement, Table

from app.models import daemons


def ttl(seconds: int) -> timedelta:
    """The configured TTL (DAEMON_TTL_SECONDS) as a duration."""
    return timedelta(seconds=seconds)


def expires_at(now: datetime, ttl: timedelta) -> datetime:
    """The ``expires_at`` that a heartbeat received at ``now`` buys."""
    return now + ttl


def live(now: datetime | BindParameter[datetime], table: Table = daemons) -> ColumnElement[bool]:
    """Rows whose TTL has not run out at ``now`` and whose expiry nobody recorded."""
    return (table.c.expires_at >= now) & table.c.stale_recorded_at.is_(None)


def expired(now: datetime | BindParameter[datetime], table: Table = daemons) -> ColumnElement[bool]:
    """Rows whose TTL ran out before ``now``, or was recorded as run out (``live``'s complement)."""
    return (table.c.expires_at < now) | table.c.stale_recorded_at.is_not(None)


def expired_unrecorded(now: datetime | BindParameter[datetime], table: Table = daemons) -> ColumnElement[bool]:
    """Rows whose TTL ran out before ``now`` and whose expiry nobody recorded yet."""
    # ``expired`` and ``stale_unrecorded`` together, written so the expires_at index serves it.
    return (table.c.expires_at < now) & table.c.stale_recorded_at.is_(None)


def stale_unrecorded(table: Table = daemons) -> ColumnElement[bool]:
    """Rows whose expiry no watcher has written to the history yet."""
    return table.c.stale_recorded_at.is_(None)


def heartbeat_within_ttl(moment: datetime, ttl: timedelta) -> ColumnElement[bool]:
    """Rows alive at ``moment`` by their own last heartbeat (earlier grace not counted)."""
    return daemons.c.last_heartbeat >= moment - ttl
