"""Leader leases: acquire, release, list. A lease lives exactly as long as its holder's session.

Nothing renews a lease. It is held while its holder's daemon row is live
(registry.expiry, THE TTL rule) and still in the session that acquired it, so
heartbeats keep it without any write of their own, and it is free the moment
the session ends: stale, deregistered, or registered again (a new session id).

The fencing token grows by one each time the lease changes hands; the
``leases`` row is kept when the lease is released so that it never goes back.

Racing acquirers take turns on the lease's row lock (on SQLite, on the single
writer): the first statement upserts the row with a no-op update, which locks
it, and what follows reads committed state afresh, so of two daemons racing
for a free lease one wins and the other finds it held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, select, update

from app.leases import holds
from app.models import daemons, leases
from app.registry import expiry
from app.registry.service import NotOwner, not_owners
from app.store.backend import backend


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as listed; ``holder`` and the times are None while it is free."""

    name: str
    token: int
    holder: str | None = None
    acquired_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """Another daemon's session holds the lease until ``expires_at`` (or until it ends sooner)."""

    holder: str
    expires_at: datetime


class NotHeld(Exception):
    """A release of a lease nobody holds."""


_SESSION_COLUMNS = (
    daemons.c.daemon_id,
    daemons.c.session_id,
    daemons.c.expires_at,
    daemons.c.owner_key_fingerprint,
)


def _session(
    conn: Connection, daemon_id: str, now: datetime, *, lock: bool = False
) -> Row[Any] | None:
    """The daemon's row with ``live`` at ``now``; ``lock``: share-lock it until commit.

    The share lock makes the session's end (a registration, a deregistration,
    the watcher's stale record) wait for this transaction, so it finds and
    closes the hold written here.
    """
    statement = select(*_SESSION_COLUMNS, expiry.live(now).label("live")).where(
        daemons.c.daemon_id == daemon_id
    )
    if lock:
        statement = statement.with_for_update(read=True)
    return conn.execute(statement).first()


def _still_held(lease: Row[Any], session: Row[Any] | None) -> bool:
    """Whether ``session`` (the row of ``lease.holder``) still holds ``lease``."""
    return session is not None and bool(session.live) and session.session_id == lease.holder_session


def _own_session(
    conn: Connection, daemon_id: str, now: datetime, owner: str | None
) -> Row[Any] | None:
    """The acting daemon's live session (share-locked), None when unknown or expired."""
    me = _session(conn, daemon_id, now, lock=True)
    if not_owners(me, owner):
        raise NotOwner(daemon_id)
    return me if me is not None and me.live else None


def acquire(
    conn: Connection, name: str, daemon_id: str, *, now: datetime, owner: str | None = None
) -> Lease | Held | None:
    """Take lease ``name`` for ``daemon_id``'s current session.

    Returns the Lease when it was free or is already this session's (then
    unchanged: same token), Held when another live session has it, None when
    the daemon is unknown or expired. Raises NotOwner for another key's daemon.
    """
    with conn.begin() as transaction:
        lease = backend(conn).insert_or_lock(conn, leases, {"name": name, "token": 0}, key="name")
        me = _own_session(conn, daemon_id, now, owner)
        if me is None:
            transaction.rollback()  # leave no row for a lease nobody took
            return None
        if lease.holder == daemon_id and lease.holder_session == me.session_id:
            return Lease(name, lease.token, daemon_id, lease.acquired_at, me.expires_at)
        previous = _session(conn, lease.holder, now) if lease.holder is not None else None
        if _still_held(lease, previous):
            return Held(lease.holder, previous.expires_at)
        if previous is not None and previous.session_id == lease.holder_session:
            # Lapsed, and no watcher has recorded it yet: its hold ends where its TTL ran out.
            holds.end_hold(conn, name, at=previous.expires_at, reason="stale")
        token = lease.token + 1
        conn.execute(
            update(leases)
            .where(leases.c.name == name)
            .values(token=token, holder=daemon_id, holder_session=me.session_id, acquired_at=now)
        )
        holds.open_hold(conn, name, daemon_id, token, at=now)
        return Lease(name, token, daemon_id, now, me.expires_at)


def release(
    conn: Connection, name: str, daemon_id: str, *, now: datetime, owner: str | None = None
) -> Held | bool:
    """Give up lease ``name`` held by ``daemon_id``'s current session.

    True when released; False when the daemon is unknown or expired; Held when
    another session has it. Raises NotHeld when nobody holds it, NotOwner for
    another key's daemon.
    """
    with conn.begin():
        lease = conn.execute(select(leases).where(leases.c.name == name).with_for_update()).first()
        me = _own_session(conn, daemon_id, now, owner)
        if me is None:
            return False
        if lease is None or lease.holder is None:
            raise NotHeld(name)
        if lease.holder == daemon_id and lease.holder_session == me.session_id:
            conn.execute(
                update(leases)
                .where(leases.c.name == name)
                .values(holder=None, holder_session=None, acquired_at=None)
            )
            holds.end_hold(conn, name, at=now, reason="released")
            return True
        holder = _session(conn, lease.holder, now)
        if _still_held(lease, holder):
            return Held(lease.holder, holder.expires_at)
        raise NotHeld(name)


def all_leases(conn: Connection, *, now: datetime) -> list[Lease]:
    """Every lease ever acquired, by name; a free or lapsed one with no holder."""
    holder = and_(
        daemons.c.daemon_id == leases.c.holder,
        daemons.c.session_id == leases.c.holder_session,
        expiry.live(now),
    )
    rows = conn.execute(
        select(leases, daemons.c.expires_at)
        .select_from(leases.outerjoin(daemons, holder))
        .order_by(leases.c.name)
    ).all()
    return [
        Lease(row.name, row.token, row.holder, row.acquired_at, row.expires_at)
        if row.expires_at is not None
        else Lease(row.name, row.token)
        for row in rows
    ]
