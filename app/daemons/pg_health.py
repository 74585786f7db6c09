"""GET /health on Postgres as one statement that also builds the JSON.

Reaping, recording the stale events and rendering both lists happen in a
single round trip, and the body comes back as text ready to send: with ten
thousand daemons, building dicts and encoding them in Python would cost more
than the query itself. The output is the same as ``daemon_state`` renders (the
contract tests run on both backends and compare field by field).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

from app.dialect import lone_statement


def _iso(column: str) -> str:
    """isoformat_z() in SQL: UTC, 'Z', and milli- or microseconds only when present."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    micros = f"(EXTRACT(MICROSECONDS FROM {column})::bigint % 1000000)"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL"
        f" WHEN {micros} = 0 THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        f" WHEN {micros} % 1000 = 0 THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        f" ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END"
    )


def _state(alias: str) -> str:
    """The DaemonState object of row ``alias``, fields in the specification's order."""
    return (
        "json_build_object("
        f"'daemonId', {alias}.daemon_id, "
        f"'version', {alias}.version, "
        f"'capabilities', {alias}.capabilities, "
        f"'pollInterval', {alias}.poll_interval, "
        f"'registeredAt', {_iso(f'{alias}.registered_at')}, "
        f"'lastHeartbeat', {_iso(f'{alias}.last_heartbeat')}, "
        f"'status', {alias}.status, "
        f"'tasksProcessed', {alias}.tasks_processed, "
        f"'currentTask', {alias}.current_task, "
        f"'reportedLastHeartbeat', {_iso(f'{alias}.reported_heartbeat_at')})"
    )


# The main SELECT sees the table as it was before the CTE's DELETE, so the
# live list filters on expires_at itself rather than relying on the delete.
#
# The whole statement reads one snapshot, taken before the DELETE waits for any
# row lock. A daemon whose row changed after that snapshot (a heartbeat, a
# registration, the watcher's stale record) may have history this statement
# cannot see, so it is left for the next reader: the ctid of a changed row is
# not the one the snapshot saw. Every writer of a daemon's events changes its
# row, so for each row deleted here the snapshot's history is the latest.
HEALTH = text(
    f"""
    WITH reaped AS (
        DELETE FROM daemons
        WHERE expires_at < :now
          AND ctid = ANY(ARRAY(SELECT ctid FROM daemons WHERE expires_at < :now))
        RETURNING *
    ), ended AS (
        -- The stale event ends each reaped daemon's open span: history.span_start's
        -- rule, never before that span began.
        UPDATE daemon_events e SET ended_at = GREATEST(r.expires_at, e.occurred_at)
        FROM reaped r
        WHERE e.daemon_id = r.daemon_id AND e.ended_at IS NULL AND r.stale_recorded_at IS NULL
        RETURNING e.daemon_id, e.ended_at
    ), recorded AS (
        INSERT INTO daemon_events (daemon_id, kind, occurred_at, recorded_at, status, state)
        SELECT r.daemon_id, 'stale', COALESCE(x.ended_at, r.expires_at), :now, NULL, ({_state('r')})::jsonb
        FROM reaped r
        LEFT JOIN ended x ON x.daemon_id = r.daemon_id
        WHERE r.stale_recorded_at IS NULL
    ), active AS (
        SELECT * FROM daemons WHERE expires_at >= :now
    )
    SELECT json_build_object(
        'activeDaemons', COALESCE((SELECT json_agg({_state('a')} ORDER BY a.daemon_id) FROM active a), '[]'),
        'stale', COALESCE((SELECT json_agg({_state('r')} ORDER BY r.daemon_id) FROM reaped r), '[]'),
        'totalActive', (SELECT count(*) FROM active)
    )::text
    """
)


def health_json(conn: Connection, *, now: datetime) -> str:
    # One statement, so one transaction of its own: the row locks of its DELETE
    # are what let only one of several racing readers report each daemon.
    with lone_statement(conn):
        return conn.execute(HEALTH, {"now": now}).scalar_one()
