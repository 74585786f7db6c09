"""A fleet written straight into the database: thousands of daemons in a second or two.

Each daemon gets its row and the registration event its history starts with, as the
registry would have written them; a few in every hundred are stale, unhealthy or degraded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, text

from app.models import daemon_events, daemons

TTL = timedelta(seconds=60)
CHUNK = 2000


def shown_status(n: int) -> str:
    """What daemon number ``n`` shows as: 1 in 100 stale, 2 unhealthy, 5 degraded, the rest healthy."""
    k = n % 100
    return "stale" if k == 0 else "unhealthy" if k <= 2 else "degraded" if k <= 7 else "healthy"


def seed_fleet(engine: Engine, count: int, now: datetime, *, prefix: str = "daemon") -> list[str]:
    """``count`` daemons named ``<prefix>-00000`` ..., registered an hour before ``now``; their ids."""
    registered = now - timedelta(hours=1)
    ids = [f"{prefix}-{n:05d}" for n in range(count)]
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
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
                "registered_at": registered,
                "session_started_at": registered,
                "last_heartbeat": last,
                "expires_at": last + TTL,
                "status": status,
                "tasks_processed": n * 7,
                "current_task": f"evt_{n}" if n % 3 else None,
            }
        )
        events.append(
            {
                "daemon_id": daemon_id,
                "kind": "registered",
                "occurred_at": registered,
                "recorded_at": registered,
                "status": status,
                "state": {"daemonId": daemon_id, "status": status, "version": f"2.{n % 4}"},
                "alerted_at": registered,
            }
        )
    with engine.begin() as conn:
        for start in range(0, count, CHUNK):
            conn.execute(insert(daemons), rows[start : start + CHUNK])
            conn.execute(insert(daemon_events), events[start : start + CHUNK])
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE daemons; ANALYZE daemon_events"))
    return ids
