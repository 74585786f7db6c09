"""Side-effect-free reads of the registry and its history: /api/daemons, /api/events.

Unlike GET /api/daemon/health these never reap, so any number of screens can
watch without taking the specification's once-only stale report from anyone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from app.models import daemon_events, daemons
from app.registry import expiry
from app.registry.wire import daemon_state, isoformat_z

MAX_EVENTS = 500


def fleet(conn: Connection, *, now: datetime) -> list[dict[str, Any]]:
    """Every daemon row, live or expired-but-unreported, marked ``stale`` accordingly."""
    rows = conn.execute(
        select(daemons, expiry.expired(now).label("stale")).order_by(daemons.c.daemon_id)
    ).all()
    return [
        {**daemon_state(row), "expiresAt": isoformat_z(row.expires_at), "stale": row.stale}
        for row in rows
    ]


def events(conn: Connection, *, after: int, limit: int) -> list[dict[str, Any]]:
    """History events with an id above ``after``, oldest first (ids only grow)."""
    rows = conn.execute(
        select(daemon_events)
        .where(daemon_events.c.id > after)
        .order_by(daemon_events.c.id)
        .limit(min(limit, MAX_EVENTS))
    ).all()
    return [
        {
            "id": row.id,
            "daemonId": row.daemon_id,
            "kind": row.kind,
            "occurredAt": isoformat_z(row.occurred_at),
            "recordedAt": isoformat_z(row.recorded_at),
            "status": row.status,
            "state": row.state,
        }
        for row in rows
    ]
