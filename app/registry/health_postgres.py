"""GET /health on Postgres as one statement that also builds the JSON.

Reaping, recording the stale events and rendering both lists happen in one
round trip, and the body comes back as text ready to send (docs/decisions.md:
with thousands of daemons, rendering in Python costs more than the query).
Nothing here is a rule of its own: the expiry test, the 'stale' write and the
DaemonState fields are rendered from expiry, history and wire.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, TextClause, bindparam, text

from app.leases.holds import stale_ends_sql
from app.registry import expiry
from app.registry.history import stale_events_sql
from app.registry.regions import in_region
from app.registry.wire import daemon_state_sql
from app.store.backend import backend
from app.store.sql import postgres_sql
from app.task_metrics import buckets

_NOW = bindparam("now")
_END_OPEN_SPANS, _INSERT_STALE_EVENTS = stale_events_sql("reaped", now=":now")
_FLUSH_MINUTES, _FLUSH_HOURS = buckets.flush_deleted_sql("reaped")

# The main SELECT sees the table as it was before the CTE's DELETE, so the
# live list filters on the expiry rule itself rather than relying on the delete.
#
# The whole statement reads one snapshot, taken before the DELETE waits for any
# row lock. A daemon whose row changed after that snapshot (a heartbeat, a
# registration, the watcher's stale record) may have history this statement
# cannot see, so it is left for the next reader: the ctid of a changed row is
# not the one the snapshot saw. Every writer of a daemon's events changes its
# row, so for each row deleted here the snapshot's history is the latest.
def _health_statement(region_filter: ColumnElement[bool]) -> TextClause:
    """The statement over the rows ``region_filter`` lets through (regions.in_region)."""
    expired = f"{postgres_sql(expiry.expired(_NOW))} AND {postgres_sql(region_filter)}"
    return text(
        f"""
        WITH reaped AS (
            DELETE FROM daemons
            WHERE {expired}
              AND ctid = ANY(ARRAY(SELECT ctid FROM daemons WHERE {expired}))
            RETURNING *
        ), ended AS (
            {_END_OPEN_SPANS}
        ), recorded AS (
            {_INSERT_STALE_EVENTS}
        ), lost_leases AS (
            {stale_ends_sql("reaped")}
        ), flushed_minutes AS (
            {_FLUSH_MINUTES}
        ), flushed_hours AS (
            {_FLUSH_HOURS}
        ), active AS (
            SELECT * FROM daemons
            WHERE {postgres_sql(expiry.live(_NOW))} AND {postgres_sql(region_filter)}
        )
        SELECT json_build_object(
            'activeDaemons', COALESCE(
                (SELECT json_agg({daemon_state_sql('a')} ORDER BY a.daemon_id) FROM active a), '[]'),
            'stale', COALESCE(
                (SELECT json_agg({daemon_state_sql('reaped')} ORDER BY reaped.daemon_id) FROM reaped), '[]'),
            'totalActive', (SELECT count(*) FROM active)
        )::text
        """
    )


HEALTH = _health_statement(in_region(None))
HEALTH_IN_REGION = _health_statement(in_region(bindparam("region")))


def health_json(conn: Connection, *, now: datetime, region: str | None = None) -> str:
    # One statement, so one transaction of its own: the row locks of its DELETE
    # are what let only one of several racing readers report each daemon.
    with backend(conn).lone_statement(conn):
        if region is None:
            return conn.execute(HEALTH, {"now": now}).scalar_one()
        return conn.execute(HEALTH_IN_REGION, {"now": now, "region": region}).scalar_one()
