"""alert events that are not status transitions, open alerts, and the deliveries' event source

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("alert_type", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("alerted_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_occurred_at", "alert_events", ["occurred_at"])
    op.create_index(
        "ix_alert_events_alerts_pending",
        "alert_events",
        ["id"],
        postgresql_where=sa.text("alerted_at IS NULL"),
        sqlite_where=sa.text("alerted_at IS NULL"),
    )
    op.create_table(
        "open_alerts",
        sa.Column("alert_type", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("raised_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("alert_type", "subject", name="pk_open_alerts"),
    )
    # Existing deliveries all came from daemon_events; the default says so.
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.add_column(
            sa.Column("source", sa.String(16), nullable=False, server_default="daemon_events")
        )
        batch.drop_constraint("uq_alert_deliveries_event_id_url", type_="unique")
        batch.create_unique_constraint(
            "uq_alert_deliveries_source_event_id_url", ["source", "event_id", "url"]
        )
        batch.create_check_constraint(
            "ck_alert_deliveries_source", "source IN ('daemon_events', 'alert_events')"
        )


def downgrade() -> None:
    # Deliveries of alert events cannot be told apart from history events' once the source is gone.
    op.execute("DELETE FROM alert_deliveries WHERE source <> 'daemon_events'")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_constraint("ck_alert_deliveries_source", type_="check")
        batch.drop_constraint("uq_alert_deliveries_source_event_id_url", type_="unique")
        batch.create_unique_constraint("uq_alert_deliveries_event_id_url", ["event_id", "url"])
        batch.drop_column("source")
    op.drop_table("open_alerts")
    op.drop_table("alert_events")
