"""events store where their span ends; the timeline needs no window function

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UP = "e.kind IN ('registered', 'status_changed')"
_COLUMNS = f"""
    CASE WHEN {_UP} THEN 'up' ELSE 'down' END AS state,
    CASE WHEN {_UP} THEN e.status END AS status,
    CASE WHEN e.kind IN ('stale', 'deregistered') THEN e.kind END AS reason"""

# Same columns as 0002's view, so the Postgres views and function built on it stay.
# Closed spans need no join; the open one of each daemon ends at its expiry;
# and an expiry nobody has recorded yet starts a 'down' span of its own.
TIMELINE = f"""
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

BACKFILL = """
UPDATE daemon_events SET ended_at = spans.next_at
FROM (
    SELECT id, LEAD(occurred_at) OVER (PARTITION BY daemon_id ORDER BY occurred_at, id) AS next_at
    FROM daemon_events
) AS spans
WHERE spans.id = daemon_events.id AND spans.next_at IS NOT NULL
"""


# 0002's definition, for downgrade (a migration is a snapshot: it keeps its own copy).
PREVIOUS_TIMELINE = """
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


def _replace_timeline(definition: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE OR REPLACE VIEW daemon_timeline AS {definition}")
    else:
        op.execute("DROP VIEW daemon_timeline")
        op.execute(f"CREATE VIEW daemon_timeline AS {definition}")


def upgrade() -> None:
    op.add_column("daemon_events", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)
    op.create_index(
        "ix_daemon_events_open",
        "daemon_events",
        ["daemon_id"],
        postgresql_where=sa.text("ended_at IS NULL"),
        sqlite_where=sa.text("ended_at IS NULL"),
    )
    _replace_timeline(TIMELINE)


def downgrade() -> None:
    _replace_timeline(PREVIOUS_TIMELINE)
    op.drop_index("ix_daemon_events_open", "daemon_events")
    op.drop_column("daemon_events", "ended_at")
