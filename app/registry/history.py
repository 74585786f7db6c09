"""Writing the event history: each event ends the span its predecessor began.

A daemon's events form a chain of spans (up with a status, or down with a
reason). Storing where each span ends (``ended_at``) when the next event is
written costs one indexed UPDATE per event — events are rare — and spares
every uptime query a window function over the whole history.

``record_stale`` is the one writer of a daemon's 'stale' event;
``stale_events_sql`` is the same write for the Postgres /health statement.

Writers of one daemon's events take turns on its ``daemons`` row lock, but
each read the clock before it waited for that lock: the writer that went
second may carry the earlier time. ``span_start`` is the rule that keeps the
chain running forwards anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from app.leases import holds
from app.models import daemon_events, daemons
from app.registry import expiry
from app.registry.wire import daemon_state, daemon_state_sql
from app.store.sql import postgres_sql


def span_start(at: datetime, open_since: datetime | None) -> datetime:
    """When an event at ``at`` starts its span, ending the one open since ``open_since``.

    Never before the open span began: a late writer's event then follows it
    with a zero-length span in between, instead of ending it before it started.
    (``stale_events_sql`` applies the same rule in SQL.)
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
    # A session's end ends its leases' holds at the same moment.
    holds.end_sessions(conn, kind, rows, moments)


def record_stale(conn: Connection, rows: list[Row[Any]], *, now: datetime) -> None:
    """Record that each expired daemon in ``rows`` went down (callers pass only unrecorded ones)."""
    # Down from the moment the TTL ran out, not from when we noticed.
    record_many(conn, "stale", rows, at=[row.expires_at for row in rows], now=now, status=None)


def stale_events_sql(reaped: str, *, now: str) -> tuple[str, str]:
    """``record_stale`` in Postgres: two data-modifying CTE bodies over the CTE ``reaped``.

    The first ends each unrecorded daemon's open span, never before it began
    (``span_start``), and returns where it ended; the second inserts the 'stale'
    event from there. ``now`` is the bound parameter's SQL (e.g. ``:now``); the
    first body must be the CTE named ``ended``.
    """
    unrecorded = postgres_sql(expiry.stale_unrecorded(daemons.alias(reaped)))
    end_open_span = (
        f"UPDATE daemon_events e SET ended_at = GREATEST({reaped}.expires_at, e.occurred_at)"
        f" FROM {reaped}"
        f" WHERE e.daemon_id = {reaped}.daemon_id AND e.ended_at IS NULL AND {unrecorded}"
        " RETURNING e.daemon_id, e.ended_at"
    )
    insert_event = (
        "INSERT INTO daemon_events (daemon_id, kind, occurred_at, recorded_at, status, state)"
        f" SELECT {reaped}.daemon_id, 'stale', COALESCE(ended.ended_at, {reaped}.expires_at),"
        f" {now}, NULL, ({daemon_state_sql(reaped)})::jsonb"
        f" FROM {reaped} LEFT JOIN ended ON ended.daemon_id = {reaped}.daemon_id"
        f" WHERE {unrecorded}"
    )
    return end_open_span, insert_event
