"""Writing the event history: each event ends the span its predecessor began.

A daemon's events form a chain of spans (up with a status, or down with a
reason). Storing where each span ends (``ended_at``) when the next event is
written costs one indexed UPDATE per event — events are rare — and spares
every uptime query a window function over the whole history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, update

from app.registry.wire import daemon_state
from app.models import daemon_events


def record(conn: Connection, kind: str, row: Row[Any], *, at: datetime, now: datetime, status: str | None) -> None:
    """Record that ``kind`` happened to the daemon in ``row`` at ``at``."""
    record_many(conn, kind, [row], at=[at], now=now, status=status)


def record_many(
    conn: Connection,
    kind: str,
    rows: list[Row[Any]],
    *,
    at: list[datetime],
    now: datetime,
    status: str | None,
) -> None:
    """The same kind of event for several daemons (each at its own moment)."""
    conn.execute(
        update(daemon_events)
        .where(
            daemon_events.c.daemon_id == bindparam("daemon"),
            daemon_events.c.ended_at.is_(None),
        )
        .values(ended_at=bindparam("at")),
        [{"daemon": row.daemon_id, "at": moment} for row, moment in zip(rows, at, strict=True)],
    )
    conn.execute(
        insert(daemon_events),
        [
            {
                "daemon_id": row.daemon_id,
                "kind": kind,
                "occurred_at": moment,
                "recorded_at": now,
                "status": status,
                "state": daemon_state(row),
            }
            for row, moment in zip(rows, at, strict=True)
        ],
    )
