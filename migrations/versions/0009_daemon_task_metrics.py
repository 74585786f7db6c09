"""daemon task metrics: the heartbeat's failure and task-time counters, and task buckets

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)

_DAEMON_COLUMNS = [
    ("tasks_failed", sa.BigInteger()),
    ("task_time_ms", sa.Double()),
    ("unsampled_tasks", sa.BigInteger()),
    ("unsampled_failed", sa.BigInteger()),
    ("unsampled_task_ms", sa.Double()),
    ("unsampled_timed_tasks", sa.BigInteger()),
]
_BUCKET_TABLES = ("daemon_task_minutes", "daemon_task_hours")


def upgrade() -> None:
    for name, type_ in _DAEMON_COLUMNS:
        op.add_column("daemons", sa.Column(name, type_, nullable=False, server_default="0"))
    for table in _BUCKET_TABLES:
        op.create_table(
            table,
            sa.Column("daemon_id", sa.String(128), nullable=False),
            sa.Column("bucket", Timestamp, nullable=False),
            sa.Column("tasks", sa.BigInteger(), nullable=False),
            sa.Column("failed", sa.BigInteger(), nullable=False),
            sa.Column("task_ms", sa.Double(), nullable=False),
            sa.Column("timed_tasks", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("daemon_id", "bucket", name=f"pk_{table}"),
        )
        op.create_index(f"ix_{table}_bucket", table, ["bucket"])


def downgrade() -> None:
    for table in _BUCKET_TABLES:
        op.drop_table(table)
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would break the views on it.
    for name, _ in reversed(_DAEMON_COLUMNS):
        op.execute(f"ALTER TABLE daemons DROP COLUMN {name}")
