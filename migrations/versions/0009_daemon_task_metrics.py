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


def _utc_floor(unit: str, value: str) -> str:
    return f"(date_trunc('{unit}', ({value}) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


# The API's figures for psql users (Postgres only, like daemon_uptime): the same
# buckets as app/task_metrics/summaries.py parts() -- whole hours from the hour
# buckets, partial hours at the ends from the minute buckets while they are kept
# (2 days), else from whole hour buckets starting inside the period -- plus the
# counts not yet sampled, read as the buckets of the daemon's last heartbeat.
# A test holds it to the API.
TASK_METRICS = f"""
CREATE FUNCTION daemon_task_metrics(period_start timestamptz, period_end timestamptz)
RETURNS TABLE (daemon_id varchar, tasks bigint, failed_tasks bigint, error_rate double precision,
               avg_response_time_ms double precision, task_ms double precision, timed_tasks bigint)
LANGUAGE sql STABLE AS $$
WITH bounds AS (
    SELECT period_start AS s, period_end AS e,
           {_utc_floor('minute', "now() - interval '2 days'")} + interval '1 minute' AS kept,
           CASE WHEN {_utc_floor('hour', 'period_start')} = period_start THEN period_start
                ELSE {_utc_floor('hour', 'period_start')} + interval '1 hour' END AS first_hour,
           {_utc_floor('hour', 'period_end')} AS last_hour
), parts AS (
    SELECT CASE WHEN s >= kept THEN 'minute' ELSE 'hour' END AS tier, s AS lo, e AS hi
      FROM bounds WHERE first_hour > last_hour
    UNION ALL
    SELECT CASE WHEN s >= kept THEN 'minute' ELSE 'hour' END, s, first_hour
      FROM bounds WHERE first_hour <= last_hour AND s < first_hour
    UNION ALL
    SELECT 'hour', first_hour, last_hour FROM bounds WHERE first_hour < last_hour
    UNION ALL
    SELECT CASE WHEN last_hour >= kept THEN 'minute' ELSE 'hour' END, last_hour, e
      FROM bounds WHERE first_hour <= last_hour AND last_hour < e
), counted AS (
    SELECT b.daemon_id, b.tasks, b.failed, b.task_ms, b.timed_tasks
      FROM parts p JOIN daemon_task_minutes b ON p.tier = 'minute' AND b.bucket >= p.lo AND b.bucket < p.hi
    UNION ALL
    SELECT b.daemon_id, b.tasks, b.failed, b.task_ms, b.timed_tasks
      FROM parts p JOIN daemon_task_hours b ON p.tier = 'hour' AND b.bucket >= p.lo AND b.bucket < p.hi
    UNION ALL
    SELECT d.daemon_id, d.unsampled_tasks, d.unsampled_failed, d.unsampled_task_ms, d.unsampled_timed_tasks
      FROM parts p JOIN daemons d
        ON (d.unsampled_tasks <> 0 OR d.unsampled_failed <> 0 OR d.unsampled_task_ms <> 0
            OR d.unsampled_timed_tasks <> 0)
       AND CASE WHEN p.tier = 'minute' THEN {_utc_floor('minute', 'd.last_heartbeat')}
                ELSE {_utc_floor('hour', 'd.last_heartbeat')} END >= p.lo
       AND CASE WHEN p.tier = 'minute' THEN {_utc_floor('minute', 'd.last_heartbeat')}
                ELSE {_utc_floor('hour', 'd.last_heartbeat')} END < p.hi
)
SELECT daemon_id,
       sum(tasks)::bigint,
       sum(failed)::bigint,
       CASE WHEN sum(tasks) > 0 THEN sum(failed)::float8 / sum(tasks) END,
       CASE WHEN sum(timed_tasks) > 0 THEN round((sum(task_ms) / sum(timed_tasks))::numeric, 3)::float8 END,
       sum(task_ms),
       sum(timed_tasks)::bigint
FROM counted
GROUP BY daemon_id
HAVING sum(tasks) + sum(failed) + sum(task_ms) > 0
ORDER BY daemon_id
$$
"""


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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TASK_METRICS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION daemon_task_metrics(timestamptz, timestamptz)")
    for table in _BUCKET_TABLES:
        op.drop_table(table)
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would break the views on it.
    for name, _ in reversed(_DAEMON_COLUMNS):
        op.execute(f"ALTER TABLE daemons DROP COLUMN {name}")
