"""Side-effect-free reads of the registry and its history: /api/daemons, /api/events.

Which daemons and in what order: app/registry/fleet_query.py.

Unlike GET /api/daemon/health these never reap, so any number of screens can
watch without taking the specification's once-only stale report from anyone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from app.models import daemon_events, daemons
from app.registry import expiry
from app.registry.fleet_query import SHOWN_STATUSES, STALE, FleetQuery, rank
from app.registry.wire import daemon_state, isoformat_z

MAX_EVENTS = 500


def fleet(conn: Connection, query: FleetQuery, *, now: datetime) -> dict[str, Any]:
    """The daemon rows ``query`` asks for (live or expired-but-unreported, marked ``stale``),
    the fleet's counts by what each daemon shows as, how many match, and the next page's cursor.
    """
    condition = query.condition(now)
    page = (
        select(daemons, expiry.expired(now).label("stale"), rank(now).label("rank"))
        .where(condition, query.keyset(now))
        .order_by(*query.order(now))
    )
    rows = conn.execute(page if query.limit is None else page.limit(query.limit + 1)).all()
    more = query.limit is not None and len(rows) > query.limit
    rows = rows[: query.limit] if more else rows
    counts = _counts(conn, now)
    matching = sum(counts.values()) if not query.filters else conn.scalar(
        select(func.count()).select_from(daemons).where(condition)
    )
    return {
        "daemons": [
            {**daemon_state(row), "expiresAt": isoformat_z(row.expires_at), "stale": row.stale}
            for row in rows
        ],
        "totalActive": sum(counts.values()) - counts[STALE],
        "totalStale": counts[STALE],
        "counts": counts,
        "matching": matching,
        "nextCursor": query.cursor_after(rows[-1].rank, rows[-1].daemon_id) if more else None,
    }


def _counts(conn: Connection, now: datetime) -> dict[str, int]:
    """How many daemons show as each of SHOWN_STATUSES: one grouped scan of the registry."""
    shown = rank(now).label("rank")
    found = dict(conn.execute(select(shown, func.count()).group_by(shown)).all())
    return {status: found.get(i, 0) for i, status in enumerate(SHOWN_STATUSES)}


def events(conn: Connection, *, after: int, limit: int, latest: bool = False) -> list[dict[str, Any]]:
    """History events with an id above ``after``, oldest first (ids only grow).

    ``latest``: the newest ``limit`` of them instead of the oldest, still oldest first,
    so a screen that starts reading shows the recent past in one request.
    """
    query = select(daemon_events).where(daemon_events.c.id > after).limit(min(limit, MAX_EVENTS))
    if latest:
        rows = conn.execute(query.order_by(daemon_events.c.id.desc())).all()[::-1]
    else:
        rows = conn.execute(query.order_by(daemon_events.c.id)).all()
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
