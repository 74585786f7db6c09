"""Where task counts are stored over time: one-minute and one-hour buckets.

Heartbeats only add to their daemon's ``unsampled_*`` columns (one UPDATE,
app/registry/task_counters.py). The sampler, run by the watcher every tick,
moves those increases into the minute and the hour bucket of the daemon's last
heartbeat, the one that reported them; a daemon row that is deleted
(deregistration, /health's reap) takes its unsampled increases into the same
buckets in the same transaction. So every counted task lands in exactly one
minute bucket and one hour bucket, storage grows with daemons x time (at most
1,440 + 24 rows per daemon per day), never with heartbeats, and each task is
in the bucket of the heartbeat that reported it (of the latest one, when the
watcher was slower than the heartbeats: resolution one watcher tick).

Minute buckets are kept ``MINUTE_RETENTION`` (2 days), hour buckets as long as
the history (``daemons prune-history``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, or_, select, text, update

from app.models import daemon_task_hours, daemon_task_minutes, daemons
from app.store.timestamps import UTCDateTime

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
MINUTE_RETENTION = timedelta(days=2)
COUNTS = ("tasks", "failed", "task_ms", "timed_tasks")
# The row's column holding each count not yet in a bucket.
UNSAMPLED = {count: f"unsampled_{count}" for count in COUNTS}
TIERS = ((daemon_task_minutes, MINUTE), (daemon_task_hours, HOUR))


def floor(at: datetime, size: timedelta) -> datetime:
    """The start of the bucket of ``size`` (a minute or an hour) that holds ``at``."""
    if size == HOUR:
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(second=0, microsecond=0)


def ceil(at: datetime, size: timedelta) -> datetime:
    """The first bucket start at or after ``at``: a time t has floor(t) >= at exactly when t >= ceil(at)."""
    start = floor(at, size)
    return start if start == at else start + size


def _floor_sql(column: str, size: timedelta) -> str:
    # floor() in Postgres, in UTC whatever the session's time zone.
    unit = "hour" if size == HOUR else "minute"
    return f"date_trunc('{unit}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def minutes_kept_since(now: datetime) -> datetime:
    """The earliest minute bucket every reader may count on (older ones may be pruned)."""
    return floor(now - MINUTE_RETENTION, MINUTE) + MINUTE


def _upsert_sql(table: str, source: str) -> str:
    """Add counts to a bucket, creating it if needed (the same SQL on SQLite and Postgres)."""
    adds = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COUNTS)
    return (
        f"INSERT INTO {table} (daemon_id, bucket, {', '.join(COUNTS)}) {source} "
        f"ON CONFLICT (daemon_id, bucket) DO UPDATE SET {adds}"
    )


_ADD = {
    table.name: text(
        _upsert_sql(table.name, "VALUES (:daemon_id, :bucket, :tasks, :failed, :task_ms, :timed_tasks)")
    ).bindparams(bindparam("bucket", type_=UTCDateTime()))
    for table, _ in TIERS
}


def _has_unsampled(row: Any) -> bool:
    return any(getattr(row, UNSAMPLED[c]) for c in COUNTS)


def _add(conn: Connection, rows: Sequence[Any]) -> None:
    """Add each row's unsampled counts to the buckets of its last heartbeat."""
    if not rows:
        return
    for table, size in TIERS:
        conn.execute(
            _ADD[table.name],
            [
                {
                    "daemon_id": r.daemon_id,
                    "bucket": floor(r.last_heartbeat, size),
                    **{c: getattr(r, UNSAMPLED[c]) for c in COUNTS},
                }
                for r in rows
            ],
        )


def flush_deleted(conn: Connection, deleted: Sequence[Row[Any]]) -> None:
    """Keep the unsampled counts of daemon rows being deleted (call in the deleting transaction)."""
    _add(conn, [row for row in deleted if _has_unsampled(row)])


def flush_deleted_sql(source: str) -> tuple[str, ...]:
    """``flush_deleted`` as CTE bodies (one per tier) for Postgres' one-statement /health.

    ``source`` names the CTE of deleted daemon rows.
    """
    has_unsampled = " OR ".join(f"{UNSAMPLED[c]} <> 0" for c in COUNTS)
    columns = ", ".join(UNSAMPLED[c] for c in COUNTS)
    return tuple(
        _upsert_sql(
            table.name,
            f"SELECT daemon_id, {_floor_sql('last_heartbeat', size)}, {columns} FROM {source} WHERE {has_unsampled}",
        )
        for table, size in TIERS
    )


_d = daemons.c
_TAKE = (
    update(daemons)
    .where(_d.daemon_id == bindparam("taken_daemon_id"))
    .values({UNSAMPLED[c]: _d[UNSAMPLED[c]] - bindparam(f"taken_{c}") for c in COUNTS})
)


def sample(conn: Connection) -> int:
    """Move every daemon's unsampled counts into its buckets; how many daemons had some.

    What is taken is subtracted, not zeroed, so a heartbeat that lands meanwhile
    keeps its increase for the next sample. Several watchers may sample at once:
    each subtracts only what it read, but two could read the same counts, so the
    row is locked (FOR UPDATE; SQLite writes one transaction at a time anyway).
    """
    with conn.begin():
        rows = conn.execute(
            select(_d.daemon_id, _d.last_heartbeat, *(_d[UNSAMPLED[c]] for c in COUNTS))
            .where(or_(*(_d[UNSAMPLED[c]] != 0 for c in COUNTS)))
            .with_for_update()
        ).all()
        if not rows:
            return 0
        _add(conn, rows)
        conn.execute(
            _TAKE,
            [
                {"taken_daemon_id": r.daemon_id, **{f"taken_{c}": getattr(r, UNSAMPLED[c]) for c in COUNTS}}
                for r in rows
            ],
        )
    return len(rows)


def prune(conn: Connection, *, now: datetime, before: datetime) -> int:
    """Forget minute buckets older than two days and hour buckets older than ``before``."""
    with conn.begin():
        minutes = conn.execute(
            delete(daemon_task_minutes).where(daemon_task_minutes.c.bucket < minutes_kept_since(now))
        ).rowcount
        hours = conn.execute(
            delete(daemon_task_hours).where(daemon_task_hours.c.bucket < floor(before, HOUR))
        ).rowcount
    return minutes + hours
