"""Which maintenance windows cover a daemon at one moment: for alerts, the fleet view and /metrics.

The same rule as the ``daemon_timeline`` view's (migration 0013) for spans of
time: a window covers the moments from its ``from`` up to, not including, its
``to``, for every daemon (fleet), the daemons it lists, the daemons that have
its capability, or the daemons in its region. Tests hold the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from app.models import maintenance_window_daemons, maintenance_windows


@dataclass(frozen=True)
class ActiveWindow:
    """A running window and whom it covers."""

    id: int
    reason: str
    ends_at: datetime
    selector: str
    capability: str | None
    region: str | None
    daemon_ids: frozenset[str]

    def covers(self, daemon_id: str | None, capabilities: Collection[str], region: str | None) -> bool:
        if self.selector == "daemons":
            return daemon_id in self.daemon_ids
        if self.selector == "capability":
            return self.capability in capabilities
        if self.selector == "region":
            return region is not None and region == self.region
        return True  # the whole fleet


def active_windows(conn: Connection, *, at: datetime) -> list[ActiveWindow]:
    """The windows running at ``at``, oldest first (there are only ever a few)."""
    w, m = maintenance_windows, maintenance_window_daemons
    rows = conn.execute(
        select(w).where(w.c.starts_at <= at, w.c.ends_at > at).order_by(w.c.id)
    ).all()
    listed: dict[int, set[str]] = {}
    if any(row.selector == "daemons" for row in rows):
        for window_id, daemon_id in conn.execute(
            select(m.c.window_id, m.c.daemon_id).where(m.c.window_id.in_([row.id for row in rows]))
        ):
            listed.setdefault(window_id, set()).add(daemon_id)
    return [
        ActiveWindow(
            row.id, row.reason, row.ends_at, row.selector, row.capability, row.region,
            frozenset(listed.get(row.id, ())),
        )
        for row in rows
    ]


def covering(
    windows: list[ActiveWindow], daemon_id: str | None, capabilities: Collection[str], region: str | None
) -> ActiveWindow | None:
    """The first of ``windows`` that covers the daemon (None: a region's alert), if any."""
    return next(
        (window for window in windows if window.covers(daemon_id, capabilities, region)), None
    )
