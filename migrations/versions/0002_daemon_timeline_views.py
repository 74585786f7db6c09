"""daemon timeline views (and Postgres helpers for people with psql)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Portable SQL (SQLite and Postgres): one row per span of a daemon's life.
# A span runs from one event to the next. The open span of a live daemon ends
# at its expires_at (which may lie in the future: clip it to "now"), and every
# daemons row also yields a 'down' span from its expires_at, so a daemon that
# expired unread counts as down whether or not anyone polled /health.
TIMELINE = """
CREATE VIEW daemon_timeline AS
WITH ordered AS (
    SELECT
        e.daemon_id,
        e.kind,
        e.status,
        e.occurred_at,
        LEAD(e.occurred_at) OVER (
            PARTITION BY e.daemon_id ORDER BY e.occurred_at, e.id
        ) AS next_at
    FROM daemon_events e
)
SELECT
    o.daemon_id,
    o.occurred_at AS started_at,
    CASE
        WHEN o.next_at IS NOT NULL THEN o.next_at
        WHEN o.kind IN ('registered', 'status_changed') THEN COALESCE(d.expires_at, o.occurred_at)
    END AS ended_at,
    CASE WHEN o.kind IN ('registered', 'status_changed') THEN 'up' ELSE 'down' END AS state,
    CASE WHEN o.kind IN ('registered', 'status_changed') THEN o.status END AS status,
    CASE WHEN o.kind IN ('stale', 'deregistered') THEN o.kind END AS reason
FROM ordered o
LEFT JOIN daemons d ON d.daemon_id = o.daemon_id AND o.next_at IS NULL
UNION ALL
SELECT d.daemon_id, d.expires_at, NULL, 'down', NULL, 'stale'
FROM daemons d
"""

# Postgres only: the timeline as of now(), outages, and uptime over a period.
TIMELINE_NOW = """
CREATE VIEW daemon_timeline_now AS
SELECT
    daemon_id,
    started_at,
    LEAST(COALESCE(ended_at, now()), now()) AS ended_at,
    (ended_at IS NULL OR ended_at > now()) AS ongoing,
    state,
    status,
    reason,
    (reason = 'deregistered') AS planned
FROM daemon_timeline
WHERE started_at < now()
"""

OUTAGES = """
CREATE VIEW daemon_outages AS
SELECT daemon_id, started_at, ended_at, ongoing, reason, planned,
       EXTRACT(EPOCH FROM ended_at - started_at) AS seconds
FROM daemon_timeline_now
WHERE state = 'down'
"""

UPTIME = """
CREATE FUNCTION daemon_uptime(period_start timestamptz, period_end timestamptz)
RETURNS TABLE (
    daemon_id varchar,
    uptime_ratio double precision,
    up_seconds double precision,
    down_seconds double precision,
    planned_down_seconds double precision,
    healthy_seconds double precision,
    degraded_seconds double precision,
    unhealthy_seconds double precision,
    incidents bigint
)
LANGUAGE sql STABLE AS $$
    WITH clipped AS (
        SELECT t.daemon_id, t.state, t.status, t.reason,
               EXTRACT(EPOCH FROM LEAST(t.ended_at, period_end)
                                  - GREATEST(t.started_at, period_start))::double precision AS seconds
        FROM daemon_timeline_now t
        WHERE t.started_at < period_end AND t.ended_at > period_start
    )
    SELECT daemon_id,
           SUM(seconds) FILTER (WHERE state = 'up')
             / NULLIF(SUM(seconds) FILTER (WHERE state = 'up' OR reason = 'stale'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE state = 'up'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE reason = 'stale'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE reason = 'deregistered'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE status = 'healthy'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE status = 'degraded'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE status = 'unhealthy'), 0),
           COUNT(*) FILTER (WHERE reason = 'stale')
    FROM clipped
    GROUP BY daemon_id
$$
"""


def upgrade() -> None:
    op.execute(TIMELINE)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TIMELINE_NOW)
        op.execute(OUTAGES)
        op.execute(UPTIME)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION daemon_uptime(timestamptz, timestamptz)")
        op.execute("DROP VIEW daemon_outages")
        op.execute("DROP VIEW daemon_timeline_now")
    op.execute("DROP VIEW daemon_timeline")
