"""A fleet written straight into the database: thousands of daemons in a second or two.

Each daemon gets its row and the registration event its history starts with, as the
registry would have written them; a few in every hundred are stale, unhealthy or degraded,
and they are spread over three regions.
With ``day=True`` each also gets a day of history (spells of degraded and unhealthy, an
outage now and then, hourly task buckets): what the console's pictures should show.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, text

from app.models import daemon_events, daemon_task_hours, daemon_task_minutes, daemons
from app.task_metrics.buckets import HOUR, floor

MINUTE = timedelta(minutes=1)

TTL = timedelta(seconds=60)
REGIONS = ("eu-west", "us-east", "ap-south")
CHUNK = 2000


def shown_status(n: int) -> str:
    """What daemon number ``n`` shows as: 1 in 100 stale, 2 unhealthy, 5 degraded, the rest healthy."""
    k = n % 100
    return "stale" if k == 0 else "unhealthy" if k <= 2 else "degraded" if k <= 7 else "healthy"


def _event(daemon_id: str, kind: str, at: datetime, status: str | None) -> dict[str, Any]:
    return {
        "daemon_id": daemon_id,
        "kind": kind,
        "occurred_at": at,
        "recorded_at": at,
        "status": status,
        "state": {"daemonId": daemon_id, "status": status or "healthy", "version": "2.2"},
        "alerted_at": at,
        "ended_at": None,  # the next event's occurred_at, once there is one
    }


def _day(daemon_id: str, n: int, now: datetime, status: str) -> list[dict[str, Any]]:
    """A day of one daemon's life, chained as the history chains events (each ends the one before)."""
    ago = lambda hours: now - timedelta(hours=hours)  # noqa: E731
    events = [_event(daemon_id, "registered", ago(24), "healthy")]
    if n % 3 == 1:
        events += [_event(daemon_id, "status_changed", ago(18), "degraded"),
                   _event(daemon_id, "status_changed", ago(16.5), "healthy")]
    if n % 4 == 2:
        events += [_event(daemon_id, "stale", ago(10), None),
                   _event(daemon_id, "registered", ago(9.25), "healthy")]
    if n % 5 == 3:
        events += [_event(daemon_id, "status_changed", ago(5), "unhealthy"),
                   _event(daemon_id, "status_changed", ago(4.5), "healthy")]
    if status != "healthy":
        events.append(_event(daemon_id, "status_changed", ago(0.4), status))
    for event, following in zip(events, events[1:]):
        event["ended_at"] = following["occurred_at"]
    return events


def _task_buckets(daemon_id: str, n: int, now: datetime) -> list[dict[str, Any]]:
    """Each past hour's tasks, as the hour's bucket (``_halves`` gives its minutes)."""
    rows = []
    for h in range(1, 24):
        tasks = 40 + (h * (n + 3)) % 60
        rows.append({"daemon_id": daemon_id, "bucket": floor(now, HOUR) - h * HOUR, "tasks": tasks,
                     "failed": tasks // 8 if h % 6 == n % 6 else h % 3,
                     "task_ms": tasks * (150.0 + 10 * (h % 5)),
                     "timed_tasks": tasks})
    return rows


def _halves(hour: dict[str, Any]) -> list[dict[str, Any]]:
    """An hour bucket as two minute buckets, at :10 and :40."""
    first = {c: hour[c] // 2 for c in ("tasks", "failed", "timed_tasks")}
    first["task_ms"] = hour["task_ms"] * first["tasks"] / hour["tasks"]
    second = {c: hour[c] - first[c] for c in first}
    return [
        {"daemon_id": hour["daemon_id"], "bucket": hour["bucket"] + MINUTE * at, **part}
        for at, part in ((10, first), (40, second))
    ]


def seed_fleet(
    engine: Engine, count: int, now: datetime, *, prefix: str = "daemon", day: bool = False
) -> list[str]:
    """``count`` daemons named ``<prefix>-00000`` ..., registered an hour (or ``day``: a day)
    before ``now``; their ids."""
    registered = now - timedelta(hours=24 if day else 1)
    ids = [f"{prefix}-{n:05d}" for n in range(count)]
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    for n, daemon_id in enumerate(ids):
        shown = shown_status(n)
        status = "healthy" if shown == "stale" else shown
        last = now - (2 * TTL if shown == "stale" else timedelta(seconds=n % 30))
        rows.append(
            {
                "daemon_id": daemon_id,
                "version": f"2.{n % 4}",
                "capabilities": ["queue", "cron"][: 1 + n % 2] + ([f"region-{n % 3}"] if n % 5 == 0 else []),
                "poll_interval": 30_000,
                "region": REGIONS[n % len(REGIONS)],
                "registered_at": registered,
                "session_started_at": registered,
                "last_heartbeat": last,
                "expires_at": last + TTL,
                "status": status,
                "tasks_processed": n * 7,
                "current_task": f"evt_{n}" if n % 3 else None,
            }
        )
        if day:
            events += _day(daemon_id, n, now, status)
            tasks += _task_buckets(daemon_id, n, now)
        else:
            events.append(_event(daemon_id, "registered", registered, status))
    with engine.begin() as conn:
        for start in range(0, count, CHUNK):
            conn.execute(insert(daemons), rows[start : start + CHUNK])
        for start in range(0, len(events), CHUNK):
            conn.execute(insert(daemon_events), events[start : start + CHUNK])
        if tasks:
            conn.execute(insert(daemon_task_hours), tasks)
            conn.execute(insert(daemon_task_minutes), [half for t in tasks for half in _halves(t)])
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE daemons; ANALYZE daemon_events"))
    return ids
