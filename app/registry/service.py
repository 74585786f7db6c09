"""The registry's rules: register, heartbeat, and the health read that reaps.

Each function takes a connection and the service's ``now`` and owns its
transaction. Which rows are live or expired is expiry's rule; an expired row
stands for the specification's KV entry whose TTL ran out, so every function
here treats it as gone until ``health`` removes it and reports it stale once.

``owner`` is the fingerprint of the daemon key acting (app/http/auth.py), or None
for a key that may act on any daemon. A daemon key may only act on the rows it
registered; an admin registration stores no owner, so only admins may act on
that daemon until a daemon key registers it once it is gone.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, Connection, Row, bindparam, delete, or_, select, update

from app.models import daemons
from app.registry import expiry, health_postgres, history, task_counters
from app.registry.regions import in_region
from app.registry.schemas import HeartbeatIn, RegistrationIn
from app.registry.wire import daemon_state
from app.store.backend import LoneUpdate, backend
from app.task_metrics import buckets


class NotOwner(Exception):
    """A daemon key acted on a daemon that another key registered."""

    def __init__(self, daemon_id: str) -> None:
        super().__init__(daemon_id)
        self.daemon_id = daemon_id


def not_owners(row: Row[Any] | None, owner: str | None) -> bool:
    """Whether ``row`` is there and ``owner`` (a daemon key's fingerprint) may not act on it."""
    return row is not None and owner is not None and row.owner_key_fingerprint != owner


def _owned_by_another(conn: Connection, daemon_id: str, owner: str | None) -> bool:
    """On a miss: whether the daemon is there but not ``owner``'s (a 403, not a 404)."""
    if owner is None:
        return False
    found = conn.execute(
        select(daemons.c.owner_key_fingerprint).where(daemons.c.daemon_id == daemon_id)
    ).first()
    return not_owners(found, owner)


def register(
    conn: Connection,
    reg: RegistrationIn,
    *,
    now: datetime,
    ttl: timedelta,
    owner: str | None = None,
    default_region: str | None = None,
) -> None:
    """Start a fresh session for ``reg.daemon_id``, replacing any earlier one.

    A registration counts as a heartbeat. If the earlier session had already
    expired unread, its end is written to history first, so uptime does not
    depend on whether anyone called ``health`` in between. A registration that
    names no region is in ``default_region``, the instance's SERVICE_REGION.
    """
    with conn.begin():
        previous = conn.execute(
            select(daemons, expiry.expired(now).label("expired"))
            .where(daemons.c.daemon_id == reg.daemon_id)
            .with_for_update()
        ).first()
        # Held while the registry has the row (live, or expired and not yet reaped).
        if not_owners(previous, owner):
            raise NotOwner(reg.daemon_id)
        if previous is not None and previous.expired and previous.stale_recorded_at is None:
            history.record_stale(conn, [previous], now=now)
        values = {
            "daemon_id": reg.daemon_id,
            "version": reg.version,
            "capabilities": list(reg.capabilities),
            "poll_interval": reg.poll_interval,
            "registered_at": reg.registered_at,
            "session_started_at": now,
            "session_id": uuid.uuid4().hex,
            "last_heartbeat": now,
            "expires_at": expiry.expires_at(now, ttl),
            "reported_heartbeat_at": None,
            "status": "healthy",
            "tasks_processed": 0,
            "current_task": None,
            "stale_recorded_at": None,
            "owner_key_fingerprint": owner,
            "region": reg.region if reg.region is not None else default_region,
            **task_counters.SESSION_START,
        }
        row = backend(conn).upsert(conn, daemons, values, key="daemon_id")
        history.record(conn, "registered", row, at=now, now=now, status="healthy")


def _heartbeat_update(*, status_unchanged: bool):
    """The heartbeat's UPDATE with bound parameters, built once at import.

    Built per call, the construct and its cache key cost more CPU than the
    database round trip. (Bound names differ from column names, which
    SQLAlchemy reserves in SET.)
    """
    now = bindparam("now", type_=daemons.c.last_heartbeat.type)
    where = [
        daemons.c.daemon_id == bindparam("beat_daemon_id"),
        expiry.live(now),
        # The ownership check rides in the same statement: no extra round trip.
        or_(
            bindparam("any_owner", type_=Boolean),
            daemons.c.owner_key_fingerprint == bindparam("beat_owner"),
        ),
    ]
    if status_unchanged:
        where.append(daemons.c.status == bindparam("new_status"))
    return (
        update(daemons)
        .where(*where)
        .values(
            last_heartbeat=now,
            expires_at=bindparam("new_expires_at", type_=daemons.c.expires_at.type),
            reported_heartbeat_at=bindparam("new_reported_heartbeat_at"),
            status=bindparam("new_status"),
            tasks_processed=bindparam("new_tasks_processed"),
            current_task=bindparam("new_current_task"),
            **task_counters.heartbeat_values(),
        )
    )


_BEAT_SAME_STATUS = LoneUpdate(_heartbeat_update(status_unchanged=True))
_BEAT_NEW_STATUS = _heartbeat_update(status_unchanged=False).returning(daemons)


def heartbeat(
    conn: Connection, beat: HeartbeatIn, *, now: datetime, ttl: timedelta, owner: str | None = None
) -> bool:
    """Record a heartbeat; False when the daemon is unknown or expired.

    An expired row is not revived: the daemon must register again, and its
    stale report stays for ``health`` to deliver. Raises NotOwner when the
    daemon belongs to another key.
    """
    params = {
        "beat_daemon_id": beat.daemon_id,
        "any_owner": owner is None,
        "beat_owner": owner,
        "now": now,
        "new_expires_at": expiry.expires_at(now, ttl),
        "new_reported_heartbeat_at": beat.last_heartbeat,
        "new_status": beat.status,
        "new_tasks_processed": beat.tasks_processed,
        "new_current_task": beat.current_task,
        **task_counters.heartbeat_params(beat),
    }
    # The common case, an unchanged status, is a single UPDATE and adds no history.
    if _BEAT_SAME_STATUS.rowcount(conn, params) == 1:
        return True
    with conn.begin():
        changed = conn.execute(_BEAT_NEW_STATUS, params).first()
        if changed is None:
            if _owned_by_another(conn, beat.daemon_id, owner):
                raise NotOwner(beat.daemon_id)
            return False
        history.record(conn, "status_changed", changed, at=now, now=now, status=beat.status)
        return True


def get(
    conn: Connection, daemon_id: str, *, now: datetime, owner: str | None = None
) -> dict[str, Any] | None:
    """The current state of one live daemon, or None when unknown or expired."""
    row = conn.execute(
        select(daemons).where(daemons.c.daemon_id == daemon_id, expiry.live(now))
    ).first()
    if not_owners(row, owner):
        raise NotOwner(daemon_id)
    return daemon_state(row) if row is not None else None


def deregister(
    conn: Connection, daemon_id: str, *, now: datetime, owner: str | None = None
) -> bool:
    """End a live daemon's session on purpose; False when unknown or expired.

    The daemon leaves the active set at once and is never reported stale; the
    history marks the time from here to its next registration as planned.
    An expired daemon cannot deregister: its outage already happened.
    """
    with conn.begin():
        statement = delete(daemons).where(daemons.c.daemon_id == daemon_id, expiry.live(now))
        if owner is not None:
            statement = statement.where(daemons.c.owner_key_fingerprint == owner)
        row = conn.execute(statement.returning(daemons)).first()
        if row is None:
            if _owned_by_another(conn, daemon_id, owner):
                raise NotOwner(daemon_id)
            return False
        buckets.flush_deleted(conn, [row])
        history.record(conn, "deregistered", row, at=now, now=now, status=None)
        return True


def health(conn: Connection, *, now: datetime, region: str | None = None) -> str:
    """Remove expired daemons and report them as ``stale`` beside the live ones.

    Returns the specification's JSON body as text; with ``region``, the same
    for that region's daemons only (the others are neither reaped nor listed).
    The DELETE ... RETURNING is the exactly-once mechanism: when several
    readers race, filtered or not, the row lock lets only one of them delete
    (and so report) each expired row; the others see it already gone.
    """
    if backend(conn).renders_json:
        return health_postgres.health_json(conn, now=now, region=region)
    with conn.begin():
        reaped = conn.execute(
            delete(daemons).where(expiry.expired(now), in_region(region)).returning(daemons)
        ).all()
        buckets.flush_deleted(conn, reaped)
        unrecorded = [row for row in reaped if row.stale_recorded_at is None]
        if unrecorded:
            history.record_stale(conn, unrecorded, now=now)
        active = conn.execute(
            select(daemons).where(expiry.live(now), in_region(region)).order_by(daemons.c.daemon_id)
        ).all()
    return json.dumps(
        {
            "activeDaemons": [daemon_state(row) for row in active],
            "stale": [daemon_state(row) for row in sorted(reaped, key=lambda r: r.daemon_id)],
            "totalActive": len(active),
        },
        separators=(",", ":"),
    )


def record_expiries(conn: Connection, *, now: datetime) -> list[str]:
    """Write the 'stale' event of every newly expired daemon, without reaping it.

    This is the watcher's job: history and alerts learn of an expiry within a
    tick, while the row stays for ``health`` to report stale exactly once. The
    conditional UPDATE makes each expiry recorded once however many watchers
    run: a second watcher blocks on the row lock, then finds it already marked.
    """
    with conn.begin():
        newly_expired = conn.execute(
            update(daemons)
            .where(expiry.expired_unrecorded(now))
            .values(stale_recorded_at=now)
            .returning(daemons)
        ).all()
        if newly_expired:
            history.record_stale(conn, newly_expired, now=now)
    return sorted(row.daemon_id for row in newly_expired)
