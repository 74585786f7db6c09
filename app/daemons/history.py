"""Writing the event history: each event ends the span its predecessor began.

A daemon's events form a chain of spans (up with a status, or down with a
reason). Storing where each span ends (``ended_at``) when the next event is
written costs one indexed UPDATE per event — events are rare — and spares
every uptime query a window function over the whole history.

Writers of one daemon's events take turns on its ``daemons`` row lock, but
each read the clock before it waited for that lock: the writer that went
second may carry the earlier time. ``span_start`` is the rule that keeps the
chain running forwards anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from app.daemons.state import daemon_state
from app.models import daemon_events


def span_start(at: datetime, open_since: datetime | None) -> datetime:
    """When an event at ``at`` starts its span, ending the one open since ``open_since``.

    Never before the open span began: a late writer's event then follows it
    with a zero-length span in between, instead of ending it before it started.
    (The Postgres /health statement applies the same rule in SQL: pg_health.)
    """
    return at if open_since is None else max(at, open_since)


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
    """The same kind of event for several daemons (each at its own moment).

    The caller holds the daemons' row locks, so the open spans read here are
    the ones this transaction ends.
    """
    open_since = dict(
        conn.execute(
            select(daemon_events.c.daemon_id, daemon_events.c.occurred_at).where(
                daemon_events.c.daemon_id.in_([row.daemon_id for row in rows]),
                daemon_events.c.ended_at.is_(None),
            )
        ).all()
    )
    moments = [
        span_start(moment, open_since.get(row.daemon_id)) for row, moment in zip(rows, at, strict=True)
    ]
    conn.execute(
        update(daemon_events)
        .where(
            daemon_events.c.daemon_id == bindparam("daemon"),
            daemon_events.c.ended_at.is_(None),
        )
        .values(ended_at=bindparam("at")),
        [{"daemon": row.daemon_id, "at": moment} for row, moment in zip(rows, moments)],
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
            for row, moment in zip(rows, moments)
        ],
    )
