"""Task summaries for a period: tasks, failures, error rate and average task time.

A period is read from the finest buckets that are still kept: whole hours from
the hour buckets, the partial hours at its ends from the minute buckets (kept
two days; older ends are counted by whole hour buckets that start inside the
period). A bucket counts when it starts inside the period. Counts not yet
sampled (the rows' ``unsampled_*``) are read as the buckets the sampler will
put them in (those of the daemon's last heartbeat). Hence a period is exact
when its ends fall on minutes (to within one watcher tick), and one that covers
whole sessions is exact whatever its ends.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import accumulate
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, func, literal, or_, select, union_all

from app.models import daemon_task_hours, daemon_task_minutes, daemons
from app.registry.schemas import InvalidInput
from app.task_metrics.buckets import COUNTS, HOUR, TIERS, UNSAMPLED, ceil, floor, minutes_kept_since
from app.uptime.period import Period

_Part = tuple[Table, datetime, datetime]  # buckets of a table starting in [from, to)

_STEP = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
DEFAULT_STEP = "1h"
MAX_STEPS = 10_000
STEP_RULE = f"must be a number and a unit m, h or d (e.g. 5m, 1h, 1d), at least 1m and at most {MAX_STEPS:,} steps per period"


def parts(start: datetime, end: datetime, *, kept: datetime) -> list[_Part]:
    """Which buckets make up [start, end): hour buckets inside, minute buckets at the ends.

    ``kept``: the earliest minute bucket still kept (``minutes_kept_since(now)``).
    """

    def edge(low: datetime, high: datetime) -> list[_Part]:
        # Inside one hour: its minutes while kept, else the hour bucket if it starts here.
        if low >= high:
            return []
        return [(daemon_task_minutes if low >= kept else daemon_task_hours, low, high)]

    first_hour = start if floor(start, HOUR) == start else floor(start, HOUR) + HOUR
    last_hour = floor(end, HOUR)
    if first_hour > last_hour:  # both ends inside one hour
        return edge(start, end)
    whole = [(daemon_task_hours, first_hour, last_hour)] if first_hour < last_hour else []
    return edge(start, first_hour) + whole + edge(last_hour, end)


_SIZE = {table.name: size for table, size in TIERS}


def summary(counts: Mapping[str, Any]) -> dict[str, Any]:
    """The Summary of the contract from summed counts (rates are None without tasks)."""
    tasks, failed = int(counts["tasks"]), int(counts["failed"])
    timed = int(counts["timed_tasks"])
    return {
        "tasks": tasks,
        "failedTasks": failed,
        "errorRate": failed / tasks if tasks else None,
        "avgResponseTimeMs": round(float(counts["task_ms"]) / timed, 3) if timed else None,
    }


def zero_counts() -> dict[str, Any]:
    """The counts of a daemon without tasks."""
    return dict.fromkeys(COUNTS, 0)


def _add(total: dict[str, Any], counts: Mapping[str, Any]) -> None:
    for c in COUNTS:
        total[c] += counts[c]


def per_daemon(conn: Connection, period: Period, daemon_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Summed counts per daemon with tasks in the period (or of one daemon), by id."""
    d = daemons.c
    sources = []
    for table, low, high in parts(period.start, period.end, kept=minutes_kept_since(period.now)):
        stored = select(table.c.daemon_id, *(table.c[c] for c in COUNTS)).where(
            table.c.bucket >= low, table.c.bucket < high
        )
        # Not yet sampled: in [low, high) when its last heartbeat's bucket starts there.
        size = _SIZE[table.name]
        unsampled = select(d.daemon_id, *(d[UNSAMPLED[c]].label(c) for c in COUNTS)).where(
            or_(*(d[UNSAMPLED[c]] != 0 for c in COUNTS)),
            d.last_heartbeat >= ceil(low, size),
            d.last_heartbeat < ceil(high, size),
        )
        if daemon_id is not None:
            stored = stored.where(table.c.daemon_id == daemon_id)
            unsampled = unsampled.where(d.daemon_id == daemon_id)
        sources += [stored, unsampled]
    if not sources:
        return {}
    rows = union_all(*sources).subquery()
    totals = conn.execute(
        select(rows.c.daemon_id, *(func.sum(rows.c[c]).label(c) for c in COUNTS))
        .group_by(rows.c.daemon_id)
        .having(func.sum(rows.c.tasks) + func.sum(rows.c.failed) + func.sum(rows.c.task_ms) > literal(0))
        .order_by(rows.c.daemon_id)
    ).all()
    return {row.daemon_id: {c: getattr(row, c) for c in COUNTS} for row in totals}


def fleet(conn: Connection, period: Period) -> dict[str, Any]:
    """The fleet's Summary and each active daemon's, for GET /api/daemon/metrics."""
    counts = per_daemon(conn, period)
    total = zero_counts()
    for daemon_counts in counts.values():
        _add(total, daemon_counts)
    return {
        "fleet": summary(total),
        "daemons": [{"daemonId": daemon_id, **summary(c)} for daemon_id, c in counts.items()],
    }


def parse_step(args: Mapping[str, str], period: Period) -> timedelta:
    """``step`` (default 1h): the length of each point of a series."""
    match = _STEP.fullmatch(args.get("step", DEFAULT_STEP))
    if not match:
        raise InvalidInput(f"Invalid query parameter step: {STEP_RULE}", {"step": STEP_RULE})
    step = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    if (period.end - period.start) / step > MAX_STEPS:
        raise InvalidInput(f"Invalid query parameter step: {STEP_RULE}", {"step": STEP_RULE})
    return step


class _Buckets:
    """One daemon's buckets of one table, sorted, with running sums for any range of starts."""

    def __init__(self, rows: Sequence[tuple[Any, ...]]) -> None:
        rows = sorted(rows, key=lambda row: row[0])
        self.starts = [row[0] for row in rows]
        # One running sum per count, each starting at 0 (tuples: thousands of rows per call).
        self.sums = [list(accumulate((row[i] for row in rows), initial=0)) for i in range(1, len(COUNTS) + 1)]

    def between(self, low: datetime, high: datetime) -> list[Any]:
        i, j = bisect_left(self.starts, low), bisect_left(self.starts, high)
        return [sums[j] - sums[i] for sums in self.sums]


def series(
    conn: Connection, period: Period, daemon_id: str, step: timedelta
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One daemon's Summary over the period, and one per step.

    Each step is a period of its own, read by the same ``parts`` rule.
    """
    unsampled = conn.execute(
        select(daemons.c.last_heartbeat, *(daemons.c[UNSAMPLED[c]] for c in COUNTS)).where(
            daemons.c.daemon_id == daemon_id
        )
    ).first()
    kept = minutes_kept_since(period.now)
    earliest = {daemon_task_hours.name: floor(period.start, HOUR)}
    # Older minute buckets are never read (parts), whether or not pruned yet.
    earliest[daemon_task_minutes.name] = max(earliest[daemon_task_hours.name], kept)
    tables = {}
    for table, size in TIERS:
        rows: list[tuple[Any, ...]] = [
            tuple(row)
            for row in conn.execute(
                select(table.c.bucket, *(table.c[c] for c in COUNTS)).where(
                    table.c.daemon_id == daemon_id,
                    table.c.bucket >= earliest[table.name],
                    table.c.bucket < period.end,
                )
            ).all()
        ]
        if unsampled is not None:  # read as the bucket the sampler will put it in
            rows.append((floor(unsampled.last_heartbeat, size), *unsampled[1:]))
        tables[table.name] = _Buckets(rows)

    def counts(start: datetime, end: datetime) -> dict[str, Any]:
        total = [0] * len(COUNTS)
        for table, low, high in parts(start, end, kept=kept):
            for i, value in enumerate(tables[table.name].between(low, high)):
                total[i] += value
        return dict(zip(COUNTS, total, strict=True))

    points = []
    at = period.start
    while at < period.end:
        until = min(at + step, period.end)
        points.append({"from": at, "to": until, **summary(counts(at, until))})
        at = until
    return summary(counts(period.start, period.end)), points
