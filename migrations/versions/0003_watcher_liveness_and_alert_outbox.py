"""watcher liveness and alert outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite's batch mode would copy the table under the view.
    op.add_column("daemons", sa.Column("stale_recorded_at", Timestamp, nullable=True))
    op.create_table(
        "service_liveness",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_alive_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_liveness")),
    )
    op.create_table(
        "service_outages",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("ended_at", Timestamp, nullable=False),
        sa.Column("daemons_graced", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_outages")),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("alert_type", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name=op.f("ck_alert_deliveries_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint("event_id", "url", name=op.f("uq_alert_deliveries_event_id_url")),
    )
    op.create_index(
        op.f("ix_alert_deliveries_state_next_attempt_at"),
        "alert_deliveries",
        ["state", "next_attempt_at"],
    )
    op.add_column("daemon_events", sa.Column("alerted_at", Timestamp, nullable=True))
    # Events written before alerting existed need no alerts.
    op.execute("UPDATE daemon_events SET alerted_at = recorded_at")
    op.create_index(
        "ix_daemon_events_alerts_pending",
        "daemon_events",
        ["id"],
        postgresql_where=sa.text("alerted_at IS NULL"),
        sqlite_where=sa.text("alerted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_daemon_events_alerts_pending", "daemon_events")
    op.drop_column("daemon_events", "alerted_at")
    op.drop_table("alert_deliveries")
    op.drop_table("service_outages")
    op.drop_table("service_liveness")
    op.drop_column("daemons", "stale_recorded_at")
