"""Time-weighted uptime, computed in SQL over the ``daemon_timeline`` view.

The view (migrations 0002, 0004, 0013) turns events into spans: 'up' from a
registration until the next event or the daemon's expiry, 'down' after a stale
or a deregistration, with the stretches of an outage that a maintenance window
covers cut out as reason 'maintenance'. Here the spans are clipped to the period and summed, so the
cost grows with the number of events, not of heartbeats.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from sqlalchemy import Column, Connection, MetaData, String, Table, false, func, literal, or_, select

from app.models import STATUSES
from app.registry.wire import isoformat_z
from app.store.backend import backend
from app.store.sql import greatest, least, seconds_between
from app.store.timestamps import UTCDateTime
from app.uptime.period import Period

# A view made by Alembic, so it lives outside the models' metadata.
daemon_timeline = Table(
    "daemon_timeline",
    MetaData(),
    Column("daemon_id", String),
    Column("started_at", UTCDateTime),
    Column("ended_at", UTCDateTime),  # NULL: still open
    Column("state", String),  # 'up' | 'down'
    Column("status", String),  # while up: healthy | degraded | unhealthy
    Column("reason", String),  # while down: stale | deregistered | maintenance
    # Where the outage a down span is part of began: windows may cut one outage in pieces.
    Column("outage_started_at", UTCDateTime),
)
# Downtime that was meant to happen: left out of the ratio, never an incident.
PLANNED_REASONS = ("deregistered", "maintenance")


def _clipped_spans(period: Period):
    """Columns and filter for the timeline's spans cut to the observable period."""
    t = daemon_timeline
    low = literal(period.start, UTCDateTime())
    high = literal(period.observed_end, UTCDateTime())
    # Typed, so SQLite's text comes back as aware datetimes too.
    start = greatest(t.c.started_at, low, type_=UTCDateTime())
    end = least(func.coalesce(t.c.ended_at, high), high, type_=UTCDateTime())
    # A span that does not run forwards is no time at all, neither an interval nor
    # an incident: zero-length when a racing writer's event was clamped onto the
    # one before it (history.span_start), negative when written before that rule.
    overlaps = (t.c.started_at < high) & or_(
        t.c.ended_at.is_(None), (t.c.ended_at > low) & (t.c.ended_at > t.c.started_at)
    )
    if period.start >= period.observed_end:
        # A period wholly in the future: nothing in it has happened yet.
        overlaps = false()
    return start, end, overlaps


def summaries_query(period: Period, daemon_ids: Collection[str] | None = None):
    """Seconds and span counts per daemon (of every one, or of ``daemon_ids``), state, status and reason."""
    t = daemon_timeline
    start, end, overlaps = _clipped_spans(period)
    query = (
        select(
            t.c.daemon_id,
            t.c.state,
            t.c.status,
            t.c.reason,
            func.sum(seconds_between(start, end)).label("seconds"),
            # Outages, not pieces: one cut by a maintenance window is one incident.
            func.count(t.c.outage_started_at.distinct()).label("outages"),
        )
        .where(overlaps)
        .group_by(t.c.daemon_id, t.c.state, t.c.status, t.c.reason)
    )
    if isinstance(daemon_ids, str):  # a lone id would be read as its characters
        raise TypeError("daemon_ids takes a collection of ids, e.g. [daemon_id]")
    if daemon_ids is not None:
        query = query.where(t.c.daemon_id.in_(daemon_ids))
    return query


def summaries(
    conn: Connection, period: Period, daemon_ids: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Uptime of every daemon seen in the period (or of those of ``daemon_ids``), sorted by id."""
    totals: dict[str, dict[str, Any]] = defaultdict(_empty_summary)
    backend(conn).without_jit(conn)
    for row in conn.execute(summaries_query(period, daemon_ids)):
        summary = totals[row.daemon_id]
        seconds = max(float(row.seconds or 0.0), 0.0)
        if row.state == "up":
            summary["upSeconds"] += seconds
            summary["statusSeconds"][row.status] += seconds
        elif row.reason in PLANNED_REASONS:
            summary["plannedDownSeconds"] += seconds
        else:
            summary["downSeconds"] += seconds
            summary["incidents"] += row.outages
    return [_finish(daemon, totals[daemon]) for daemon in sorted(totals)]


def spans(conn: Connection, period: Period, daemon_ids: Collection[str]) -> list[Any]:
    """The spans of these daemons' lives in the period, clipped to it, by daemon and start.

    Each row: ``daemon_id``, ``start``, ``end``, ``state``, ``status``, ``reason``.
    """
    t = daemon_timeline
    start, end, overlaps = _clipped_spans(period)
    return conn.execute(
        select(t.c.daemon_id, start.label("start"), end.label("end"), t.c.state, t.c.status, t.c.reason)
        .where(overlaps, t.c.daemon_id.in_(daemon_ids))
        .order_by(t.c.daemon_id, t.c.started_at)
    ).all()


def down_intervals(conn: Connection, period: Period, daemon_id: str) -> list[dict[str, Any]]:
    """Each time the daemon was down in the period, clipped to it, oldest first."""
    t = daemon_timeline
    start, end, overlaps = _clipped_spans(period)
    backend(conn).without_jit(conn)
    rows = conn.execute(
        select(start.label("start"), end.label("end"), t.c.ended_at, t.c.reason)
        .where(overlaps, t.c.daemon_id == daemon_id, t.c.state == "down")
        .order_by(t.c.started_at)
    )
    return [
        {
            "from": isoformat_z(row.start),
            "to": isoformat_z(row.end),
            "reason": row.reason,
            "planned": row.reason in PLANNED_REASONS,
            "ongoing": row.ended_at is None or row.ended_at > period.now,
        }
        for row in rows
    ]


def _empty_summary() -> dict[str, Any]:
    return {
        "upSeconds": 0.0,
        "downSeconds": 0.0,
        "plannedDownSeconds": 0.0,
        "statusSeconds": dict.fromkeys(STATUSES, 0.0),
        "incidents": 0,
    }


def _finish(daemon_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    counted = summary["upSeconds"] + summary["downSeconds"]
    ratio = summary["upSeconds"] / counted if counted else None
    rounded = {
        key: round(value, 3) if isinstance(value, float) else value for key, value in summary.items()
    }
    rounded["statusSeconds"] = {k: round(v, 3) for k, v in summary["statusSeconds"].items()}
    return {"daemonId": daemon_id, "uptimeRatio": None if ratio is None else round(ratio, 6), **rounded}

