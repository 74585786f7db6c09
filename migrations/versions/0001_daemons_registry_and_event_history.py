"""daemons registry and event history

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "daemons",
        sa.Column("daemon_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("capabilities", Json, nullable=False),
        sa.Column("poll_interval", sa.Integer(), nullable=False),
        sa.Column("registered_at", Timestamp, nullable=False),
        sa.Column("session_started_at", Timestamp, nullable=False),
        sa.Column("last_heartbeat", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("reported_heartbeat_at", Timestamp, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tasks_processed", sa.BigInteger(), nullable=False),
        sa.Column("current_task", sa.String(length=256), nullable=True),
        sa.CheckConstraint(
            "status IN ('healthy', 'degraded', 'unhealthy')", name=op.f("ck_daemons_status")
        ),
        sa.CheckConstraint("tasks_processed >= 0", name=op.f("ck_daemons_tasks_processed")),
        sa.PrimaryKeyConstraint("daemon_id", name=op.f("pk_daemons")),
    )
    op.create_index(op.f("ix_daemons_expires_at"), "daemons", ["expires_at"])

    op.create_table(
        "daemon_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("daemon_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("state", Json, nullable=True),
        sa.CheckConstraint(
            "kind IN ('registered', 'status_changed', 'stale', 'deregistered')",
            name=op.f("ck_daemon_events_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daemon_events")),
    )
    op.create_index(
        op.f("ix_daemon_events_daemon_id_occurred_at"), "daemon_events", ["daemon_id", "occurred_at"]
    )
    op.create_index(op.f("ix_daemon_events_occurred_at"), "daemon_events", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("daemon_events")
    op.drop_table("daemons")
