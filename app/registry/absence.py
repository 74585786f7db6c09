"""Why a heartbeat found no live daemon: the ``reason`` beside the specification's 404.

- ``deregistered``: an operator (or the daemon itself) ended its session on
  purpose; an agent should not register again on its own.
- ``expired``: it was silent past its TTL; it should register again.
- ``unknown``: never registered, or forgotten since (history is pruned after
  HISTORY_RETENTION_DAYS).

Read only on the 404 path, so the heartbeat's hot path pays nothing: one lookup
of the daemon's open event, which a unique partial index finds directly.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from app.models import daemon_events


def reason(conn: Connection, daemon_id: str) -> str:
    """Why ``daemon_id`` has no live registration."""
    last_kind = conn.execute(
        select(daemon_events.c.kind).where(
            daemon_events.c.daemon_id == daemon_id, daemon_events.c.ended_at.is_(None)
        )
    ).scalar()
    if last_kind is None:
        return "unknown"
    return "deregistered" if last_kind == "deregistered" else "expired"
