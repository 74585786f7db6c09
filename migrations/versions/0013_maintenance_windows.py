"""maintenance windows: planned work that sends no alerts and counts as planned downtime

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)

# --- the timeline -------------------------------------------------------------
# 0004's spans, with the capabilities and the region a daemon had when it went
# down (what a window's capability and region selectors are matched against):
# from the 'stale' event's snapshot, or from the row of an expiry nobody has
# recorded yet.
_UP = "e.kind IN ('registered', 'status_changed')"
_COLUMNS = f"""
    CASE WHEN {_UP} THEN 'up' ELSE 'down' END AS state,
    CASE WHEN {_UP} THEN e.status END AS status,
    CASE WHEN e.kind IN ('stale', 'deregistered') THEN e.kind END AS reason"""
_SPANS = """
CREATE VIEW daemon_spans AS
SELECT e.daemon_id, e.occurred_at AS started_at, e.ended_at,{columns},
    CASE WHEN e.kind = 'stale' THEN {event_capabilities} END AS capabilities,
    CASE WHEN e.kind = 'stale' THEN {event_region} END AS region
FROM daemon_events e
WHERE e.ended_at IS NOT NULL
UNION ALL
SELECT e.daemon_id, e.occurred_at,
    CASE WHEN {up} THEN COALESCE(d.expires_at, e.occurred_at) END,{columns},
    CASE WHEN e.kind = 'stale' THEN {event_capabilities} END,
    CASE WHEN e.kind = 'stale' THEN {event_region} END
FROM daemon_events e
LEFT JOIN daemons d ON d.daemon_id = e.daemon_id
WHERE e.ended_at IS NULL
UNION ALL
SELECT d.daemon_id, d.expires_at, NULL, 'down', NULL, 'stale', d.capabilities, d.region
FROM daemons d
WHERE d.stale_recorded_at IS NULL
"""
_EVENT_CAPABILITIES = {
    "postgresql": "e.state -> 'capabilities'",
    "sqlite": "json_extract(e.state, '$.capabilities')",
}
_EVENT_REGION = {
    "postgresql": "e.state ->> 'region'",
    "sqlite": "json_extract(e.state, '$.region')",
}
_HAS_CAPABILITY = {
    "postgresql": "s.capabilities @> jsonb_build_array(w.capability)",
    "sqlite": "EXISTS (SELECT 1 FROM json_each(s.capabilities) c WHERE c.value = w.capability)",
}

# The one rule of what a window w covers of a down span s: an outage (a span that
# runs forwards; a deregistration is planned anyway) overlapping the window, of a
# daemon its selector picks. (app/maintenance/coverage.py is the same rule for
# one moment, for alerts; tests hold the two together.)
_COVERS = """(
    s.reason = 'stale' AND (s.ended_at IS NULL OR s.ended_at > s.started_at)
    AND w.starts_at < COALESCE(s.ended_at, w.ends_at) AND w.ends_at > s.started_at
    AND (w.selector = 'fleet'
         OR (w.selector = 'daemons' AND EXISTS (
                SELECT 1 FROM maintenance_window_daemons m
                WHERE m.window_id = w.id AND m.daemon_id = s.daemon_id))
         OR (w.selector = 'capability' AND {has_capability})
         OR (w.selector = 'region' AND s.region = w.region)))"""

# Same first six columns as before, plus where the outage a down span belongs to
# began (so an outage cut in pieces by windows is one incident). An outage that a
# window covers is cut where its coverage changes: where a window begins that no
# other covers, and where one ends that no other carries on (so overlapping or
# adjoining windows make one planned stretch, and no second counts twice). Each
# cut says whether what follows it is covered; the pieces that are get reason
# 'maintenance' (planned), the rest stay 'stale'. Joins, not per-row subqueries:
# a plan the database can cost cheaply.
_TIMELINE = """
CREATE VIEW daemon_timeline AS
WITH cover AS (
    SELECT s.daemon_id, s.started_at AS span_start, s.ended_at AS span_end,
           w.starts_at, w.ends_at
    FROM daemon_spans s JOIN maintenance_windows w ON {covers}
), cuts AS (
    SELECT daemon_id, span_start, span_end, span_start AS at,
           MIN(starts_at) <= span_start AS covered
    FROM cover GROUP BY daemon_id, span_start, span_end
    UNION
    SELECT c.daemon_id, c.span_start, c.span_end, c.starts_at, TRUE FROM cover c
    WHERE c.starts_at > c.span_start AND NOT EXISTS (
        SELECT 1 FROM cover o
        WHERE o.daemon_id = c.daemon_id AND o.span_start = c.span_start
          AND o.starts_at < c.starts_at AND o.ends_at >= c.starts_at)
    UNION
    SELECT c.daemon_id, c.span_start, c.span_end, c.ends_at, FALSE FROM cover c
    WHERE (c.span_end IS NULL OR c.ends_at < c.span_end) AND NOT EXISTS (
        SELECT 1 FROM cover o
        WHERE o.daemon_id = c.daemon_id AND o.span_start = c.span_start
          AND o.starts_at <= c.ends_at AND o.ends_at > c.ends_at)
)
SELECT s.daemon_id, s.started_at, s.ended_at, s.state, s.status, s.reason,
       CASE WHEN s.state = 'down' THEN s.started_at END AS outage_started_at
FROM daemon_spans s
WHERE NOT EXISTS (
    SELECT 1 FROM cover c
    WHERE c.daemon_id = s.daemon_id AND c.span_start = s.started_at AND s.reason = 'stale')
UNION ALL
SELECT daemon_id, at, COALESCE(LEAD(at) OVER (PARTITION BY daemon_id, span_start ORDER BY at), span_end),
       'down', NULL, CASE WHEN covered THEN 'maintenance' ELSE 'stale' END, span_start
FROM cuts
"""

# --- Postgres only: the views and function for psql (0002, 0008), now counting
# maintenance as planned and an outage cut by windows as one incident.
_TIMELINE_NOW = """
CREATE VIEW daemon_timeline_now AS
SELECT
    daemon_id,
    started_at,
    LEAST(COALESCE(ended_at, now()), now()) AS ended_at,
    (ended_at IS NULL OR ended_at > now()) AS ongoing,
    state,
    status,
    reason,
    ({planned}) AS planned{outage_start}
FROM daemon_timeline
WHERE started_at < now() AND (ended_at IS NULL OR ended_at > started_at)
"""
_OUTAGES = """
CREATE VIEW daemon_outages AS
SELECT daemon_id, started_at, ended_at, ongoing, reason, planned,
       EXTRACT(EPOCH FROM ended_at - started_at) AS seconds{outage_start}
FROM daemon_timeline_now
WHERE state = 'down'
"""
_UPTIME = """
CREATE OR REPLACE FUNCTION daemon_uptime(period_start timestamptz, period_end timestamptz)
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
        SELECT t.daemon_id, t.state, t.status, t.reason, t.planned, {outage_start_column},
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
           COALESCE(SUM(seconds) FILTER (WHERE state = 'down' AND planned), 0),
           COALESCE(SUM(seconds) FILTER (WHERE status = 'healthy'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE status = 'degraded'), 0),
           COALESCE(SUM(seconds) FILTER (WHERE status = 'unhealthy'), 0),
           {incidents} FILTER (WHERE reason = 'stale')
    FROM clipped
    GROUP BY daemon_id
$${jit}
"""
# What 0008 left, for downgrade (a migration keeps its own copy of what it replaces).
_PREVIOUS_TIMELINE = f"""
CREATE VIEW daemon_timeline AS
SELECT e.daemon_id, e.occurred_at AS started_at, e.ended_at,{_COLUMNS}
FROM daemon_events e
WHERE e.ended_at IS NOT NULL
UNION ALL
SELECT e.daemon_id, e.occurred_at,
    CASE WHEN {_UP} THEN COALESCE(d.expires_at, e.occurred_at) END,{_COLUMNS}
FROM daemon_events e
LEFT JOIN daemons d ON d.daemon_id = e.daemon_id
WHERE e.ended_at IS NULL
UNION ALL
SELECT d.daemon_id, d.expires_at, NULL, 'down', NULL, 'stale'
FROM daemons d
WHERE d.stale_recorded_at IS NULL
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _drop_views() -> None:
    if _postgres():
        op.execute("DROP VIEW daemon_outages")
        op.execute("DROP VIEW daemon_timeline_now")
    op.execute("DROP VIEW daemon_timeline")


def _postgres_views(*, planned: str, outage_start: bool) -> None:
    extra_column = ",\n    outage_started_at" if outage_start else ""
    op.execute(_TIMELINE_NOW.format(planned=planned, outage_start=extra_column))
    op.execute(_OUTAGES.format(outage_start=extra_column))
    op.execute(
        _UPTIME.format(
            outage_start_column="t.outage_started_at" if outage_start else "NULL AS outage_started_at",
            incidents="COUNT(DISTINCT outage_started_at)" if outage_start else "COUNT(*)",
            # JIT would compile the timeline's plan for longer than it runs (app/store/backend.py).
            jit="\nSET jit = off" if outage_start else "",
        )
    )


def upgrade() -> None:
    op.create_table(
        "maintenance_windows",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("starts_at", Timestamp, nullable=False),
        sa.Column("ends_at", Timestamp, nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=False),
        sa.Column("selector", sa.String(length=16), nullable=False),
        sa.Column("capability", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("ended_early_at", Timestamp, nullable=True),
        sa.CheckConstraint(
            "selector IN ('fleet', 'daemons', 'capability', 'region')",
            name=op.f("ck_maintenance_windows_selector"),
        ),
        sa.CheckConstraint("starts_at < ends_at", name=op.f("ck_maintenance_windows_runs_forwards")),
        sa.CheckConstraint(
            "(selector = 'capability') = (capability IS NOT NULL)",
            name=op.f("ck_maintenance_windows_capability"),
        ),
        sa.CheckConstraint(
            "(selector = 'region') = (region IS NOT NULL)", name=op.f("ck_maintenance_windows_region")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_windows")),
    )
    op.create_index(op.f("ix_maintenance_windows_ends_at"), "maintenance_windows", ["ends_at"])
    op.create_table(
        "maintenance_window_daemons",
        sa.Column("window_id", sa.BigInteger(), nullable=False),
        sa.Column("daemon_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["window_id"], ["maintenance_windows.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("window_id", "daemon_id", name=op.f("pk_maintenance_window_daemons")),
    )
    op.create_index(
        op.f("ix_maintenance_window_daemons_daemon_id"), "maintenance_window_daemons", ["daemon_id"]
    )
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.add_column(sa.Column("maintenance_window_id", sa.BigInteger(), nullable=True))
        batch.drop_constraint(op.f("ck_alert_deliveries_state"), type_="check")
        batch.create_check_constraint(
            op.f("ck_alert_deliveries_state"), "state IN ('pending', 'delivered', 'failed', 'suppressed')"
        )

    dialect = op.get_bind().dialect.name
    _drop_views()
    op.execute(
        _SPANS.format(
            columns=_COLUMNS, up=_UP, event_capabilities=_EVENT_CAPABILITIES[dialect],
            event_region=_EVENT_REGION[dialect],
        )
    )
    op.execute(_TIMELINE.format(covers=_COVERS.format(has_capability=_HAS_CAPABILITY[dialect])))
    if _postgres():
        _postgres_views(planned="reason IN ('deregistered', 'maintenance')", outage_start=True)


def downgrade() -> None:
    _drop_views()
    op.execute("DROP VIEW daemon_spans")
    op.execute(_PREVIOUS_TIMELINE)
    if _postgres():
        _postgres_views(planned="reason = 'deregistered'", outage_start=False)
    op.execute("DELETE FROM alert_deliveries WHERE state = 'suppressed'")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_constraint(op.f("ck_alert_deliveries_state"), type_="check")
        batch.create_check_constraint(
            op.f("ck_alert_deliveries_state"), "state IN ('pending', 'delivered', 'failed')"
        )
        batch.drop_column("maintenance_window_id")
    op.drop_index(op.f("ix_maintenance_window_daemons_daemon_id"), "maintenance_window_daemons")
    op.drop_table("maintenance_window_daemons")
    op.drop_index(op.f("ix_maintenance_windows_ends_at"), "maintenance_windows")
    op.drop_table("maintenance_windows")
