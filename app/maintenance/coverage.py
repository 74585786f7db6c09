"""Whether a maintenance window covers a daemon at one moment: the alerts' question.

The same rule as the ``daemon_timeline`` view's (migration 0012) for spans of
time: a window covers the moments from its ``from`` up to, not including, its
``to``, for every daemon (fleet), the daemons it lists, or the daemons that had
its capability. Tests hold the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, and_, exists, or_, select

from app.models import maintenance_window_daemons, maintenance_windows


def covering_window(
    conn: Connection, daemon_id: str, capabilities: Sequence[str], *, at: datetime
) -> int | None:
    """The id of a window covering ``daemon_id`` (with ``capabilities``) at ``at``, if any."""
    w, m = maintenance_windows, maintenance_window_daemons
    listed = exists().where(m.c.window_id == w.c.id, m.c.daemon_id == daemon_id)
    return conn.execute(
        select(w.c.id)
        .where(
            w.c.starts_at <= at,
            w.c.ends_at > at,
            or_(
                w.c.selector == "fleet",
                and_(w.c.selector == "daemons", listed),
                and_(w.c.selector == "capability", w.c.capability.in_(list(capabilities))),
            ),
        )
        .order_by(w.c.id)
        .limit(1)
    ).scalar()
