"""stale events indexed: the timeline's maintenance cover reads them without scanning all history

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The daemon_timeline view (0013) matches maintenance windows against the down
# spans whose reason is 'stale', written exactly as the view's reason column is
# (daemon_spans), so that Postgres can prove its filter implies this predicate.
# Without it every uptime query scanned all of history for them, one daemon's too.
_STALE = sa.text("(CASE WHEN kind IN ('stale', 'deregistered') THEN kind END) = 'stale'")


def upgrade() -> None:
    op.create_index(
        op.f("ix_daemon_events_stale"), "daemon_events", ["daemon_id", "occurred_at"],
        postgresql_where=_STALE, sqlite_where=_STALE,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_daemon_events_stale"), "daemon_events")
