"""The lease history: one ``lease_holds`` row per hold, opened on acquire, closed when it ends.

A hold ends when its holder releases the lease, or when the holder's session
ends: it goes stale, deregisters or registers again. Each of those is already
a write of the daemon's history (registry.history), which calls ``end_sessions``
in the same transaction, so the hold closes exactly where the session's span
does; /health's one-statement reap on Postgres closes them with
``stale_ends_sql``. Validity never waits for these writes: who holds a lease
is derived from the daemon rows (leases.service).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, delete, insert, literal, update

from app.models import lease_holds
from app.store.sql import greatest

# The daemon history event that ends a session → why its holds ended.
SESSION_ENDS = {"stale": "stale", "deregistered": "deregistered", "registered": "reregistered"}


def _ended_at(at: ColumnElement[datetime]) -> ColumnElement[datetime]:
    # Never before the hold began: a racing writer may carry an earlier clock reading.
    return greatest(at, lease_holds.c.acquired_at)


_END_HOLDER_HOLDS = (
    update(lease_holds)
    .where(lease_holds.c.holder == bindparam("session_holder"), lease_holds.c.ended_at.is_(None))
    .values(
        ended_at=_ended_at(bindparam("session_end", type_=lease_holds.c.ended_at.type)),
        end_reason=bindparam("end"),
    )
)


def open_hold(conn: Connection, name: str, holder: str, token: int, *, at: datetime) -> None:
    """``holder`` took lease ``name`` with ``token`` at ``at``."""
    conn.execute(insert(lease_holds).values(name=name, holder=holder, token=token, acquired_at=at))


def end_hold(conn: Connection, name: str, *, at: datetime, reason: str) -> None:
    """Close the open hold of lease ``name`` (if any) at ``at``."""
    conn.execute(
        update(lease_holds)
        .where(lease_holds.c.name == name, lease_holds.c.ended_at.is_(None))
        .values(ended_at=_ended_at(literal(at, lease_holds.c.ended_at.type)), end_reason=reason)
    )


def end_sessions(
    conn: Connection, kind: str, rows: Sequence[Row[Any]], at: Sequence[datetime]
) -> None:
    """The daemons in ``rows`` each had a ``kind`` event at ``at``: close the holds it ended.

    A status change ends nothing. A registration ends every open hold of its
    daemon: they all belong to earlier sessions.
    """
    reason = SESSION_ENDS.get(kind)
    if reason is None or not rows:
        return
    conn.execute(
        _END_HOLDER_HOLDS,
        [
            {"session_holder": row.daemon_id, "session_end": moment, "end": reason}
            for row, moment in zip(rows, at, strict=True)
        ],
    )


def stale_ends_sql(reaped: str) -> str:
    """``end_sessions`` for 'stale' in Postgres: a data-modifying CTE body over CTE ``reaped``."""
    return (
        "UPDATE lease_holds h SET ended_at = GREATEST(r.expires_at, h.acquired_at),"
        " end_reason = 'stale'"
        f" FROM {reaped} r WHERE h.holder = r.daemon_id AND h.ended_at IS NULL"
    )


def prune(conn: Connection, *, before: datetime) -> int:
    """Delete holds that ended before ``before`` (the history's retention); how many went.

    Open holds stay however old: they say who holds the lease now.
    """
    with conn.begin():
        return conn.execute(delete(lease_holds).where(lease_holds.c.ended_at < before)).rowcount
