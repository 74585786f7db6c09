"""one open event per daemon, enforced by the database; spans that do not run forwards count as no time

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
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

# daemon_timeline_now (0002) with one more condition: a span that does not run
# forwards (zero-length: a racing writer's event clamped onto the one before it;
# negative: written by racing writers before that rule) is no time at all, so
# daemon_outages and daemon_uptime() agree with the API. Postgres only, as in 0002.
_TIMELINE_NOW = """
CREATE OR REPLACE VIEW daemon_timeline_now AS
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
WHERE started_at < now(){only_forwards}
"""
ONLY_FORWARDS = " AND (ended_at IS NULL OR ended_at > started_at)"


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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_TIMELINE_NOW.format(only_forwards=ONLY_FORWARDS))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_TIMELINE_NOW.format(only_forwards=""))
    op.drop_index("ix_daemon_events_open", "daemon_events")
    _open_index(unique=False)
