"""The wire format: the specification's DaemonState and its timestamps.

One table of fields drives both renderings: ``daemon_state`` in Python and
``daemon_state_sql`` for the Postgres fast path of /health, which builds the
JSON in the database. ``isoformat_z`` and ``isoformat_z_sql`` are the same
timestamp format in both worlds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row


@dataclass(frozen=True)
class WireField:
    name: str  # the JSON key
    column: str  # the daemons column it comes from
    timestamp: bool = False  # rendered with isoformat_z (NULL stays null)


# The specification's fields in its order, then what the daemon reported.
DAEMON_STATE = (
    WireField("daemonId", "daemon_id"),
    WireField("version", "version"),
    WireField("capabilities", "capabilities"),
    WireField("pollInterval", "poll_interval"),
    WireField("registeredAt", "registered_at", timestamp=True),
    # The service's receipt time: the one clock staleness is judged by.
    WireField("lastHeartbeat", "last_heartbeat", timestamp=True),
    WireField("status", "status"),
    WireField("tasksProcessed", "tasks_processed"),
    WireField("currentTask", "current_task"),
    # The daemon's own claim, kept as data (a skewed clock shows here).
    WireField("reportedLastHeartbeat", "reported_heartbeat_at", timestamp=True),
    # Where it runs (null: no region given and the instance has no SERVICE_REGION).
    WireField("region", "region"),
)


def isoformat_z(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``; milliseconds or microseconds only when present."""
    value = value.astimezone(UTC)
    if value.microsecond == 0:
        timespec = "seconds"
    elif value.microsecond % 1000 == 0:
        timespec = "milliseconds"
    else:
        timespec = "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def isoformat_z_sql(column: str) -> str:
    """``isoformat_z`` as a Postgres expression over a timestamptz ``column`` (NULL stays NULL)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    micros = f"(EXTRACT(MICROSECONDS FROM {column})::bigint % 1000000)"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL"
        f" WHEN {micros} = 0 THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        f" WHEN {micros} % 1000 = 0 THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        f" ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END"
    )


def daemon_state(row: Row[Any]) -> dict[str, Any]:
    """The DaemonState of one ``daemons`` row."""
    state = {}
    for field in DAEMON_STATE:
        value = getattr(row, field.column)
        state[field.name] = isoformat_z(value) if field.timestamp and value is not None else value
    return state


def daemon_state_sql(alias: str) -> str:
    """The DaemonState of row ``alias`` as a Postgres json_build_object, fields in order."""
    pairs = []
    for field in DAEMON_STATE:
        column = f"{alias}.{field.column}"
        pairs.append(f"'{field.name}', {isoformat_z_sql(column) if field.timestamp else column}")
    return f"json_build_object({', '.join(pairs)})"
