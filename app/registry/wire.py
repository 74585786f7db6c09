"""The specification's DaemonState, built from a ``daemons`` row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from app.store.timestamps import isoformat_z


def daemon_state(row: Row[Any]) -> dict[str, Any]:
    """Wire form of one daemon: the specification's fields plus what the daemon reported."""
    reported = row.reported_heartbeat_at
    return {
        "daemonId": row.daemon_id,
        "version": row.version,
        "capabilities": row.capabilities,
        "pollInterval": row.poll_interval,
        "registeredAt": isoformat_z(row.registered_at),
        # The service's receipt time: the one clock staleness is judged by.
        "lastHeartbeat": isoformat_z(row.last_heartbeat),
        "status": row.status,
        "tasksProcessed": row.tasks_processed,
        "currentTask": row.current_task,
        # The daemon's own claim, kept as data (a skewed clock shows here).
        "reportedLastHeartbeat": isoformat_z(reported) if reported else None,
    }
