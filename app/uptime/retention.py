"""Bounded history: forget events older than the retention period."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, delete, exists, func, or_, select

from app.models import daemon_events

UP_KINDS = ("registered", "status_changed")


def prune(conn: Connection, *, before: datetime) -> int:
    """Delete events older than ``before``; return how many went.

    Each daemon keeps its last event before the cut when that event still
    decides what the daemon was doing at the cut (a session still open, or an
    outage that a later registration ended), so uptime after the cut is
    unchanged. A daemon that went away before the cut is forgotten entirely.
    """
    e = daemon_events
    ranked = (
        select(
            e.c.id,
            e.c.daemon_id,
            e.c.kind,
            func.row_number()
            .over(partition_by=e.c.daemon_id, order_by=(e.c.occurred_at.desc(), e.c.id.desc()))
            .label("rank"),
        )
        .where(e.c.occurred_at < before)
        .subquery()
    )
    later = e.alias("later")
    still_needed = select(ranked.c.id).where(
        ranked.c.rank == 1,
        or_(
            ranked.c.kind.in_(UP_KINDS),
            exists().where(and_(later.c.daemon_id == ranked.c.daemon_id, later.c.occurred_at >= before)),
        ),
    )
    with conn.begin():
        result = conn.execute(
            delete(e).where(e.c.occurred_at < before, e.c.id.not_in(still_needed))
        )
    return result.rowcount
