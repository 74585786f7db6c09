"""one open event per daemon, enforced by the database

Revision ID: 0008
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("ended_at IS NULL")

# Racing writers could leave a daemon with two open events. Before the index
# can be unique, close each open event that has a later one where the next
# event began (or where it began itself, if that is later). Spans that racing
# writers ended before they began stay as written: uptime skips them.
CLOSE_EXTRA_OPEN = """
UPDATE daemon_events SET ended_at = (
    SELECT CASE WHEN MIN(later.occurred_at) > daemon_events.occurred_at
                THEN MIN(later.occurred_at) ELSE daemon_events.occurred_at END
    FROM daemon_events later
    WHERE later.daemon_id = daemon_events.daemon_id
      AND (later.occurred_at > daemon_events.occurred_at
           OR (later.occurred_at = daemon_events.occurred_at AND later.id > daemon_events.id))
)
WHERE ended_at IS NULL AND EXISTS (
    SELECT 1 FROM daemon_events later
    WHERE later.daemon_id = daemon_events.daemon_id
      AND (later.occurred_at > daemon_events.occurred_at
           OR (later.occurred_at = daemon_events.occurred_at AND later.id > daemon_events.id))
)
"""


def _open_index(unique: bool) -> None:
    op.create_index(
        "ix_daemon_events_open",
        "daemon_events",
        ["daemon_id"],
        unique=unique,
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    )


def upgrade() -> None:
    op.execute(CLOSE_EXTRA_OPEN)
    op.drop_index("ix_daemon_events_open", "daemon_events")
    _open_index(unique=True)


def downgrade() -> None:
    op.drop_index("ix_daemon_events_open", "daemon_events")
    _open_index(unique=False)
