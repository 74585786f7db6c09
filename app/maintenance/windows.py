"""Opening, listing and ending maintenance windows.

A window never rewrites the past: one asked to start earlier starts now, and
ending one early moves its end to now and keeps it, so downtime already counted
as planned stays planned. What a window covers is decided in SQL by the
``daemon_timeline`` view (migration 0013) for uptime, and by ``coverage`` for
alerts and the fleet view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from app.maintenance.schemas import MaintenanceIn
from app.models import maintenance_window_daemons, maintenance_windows
from app.registry.schemas import InvalidInput
from app.registry.wire import isoformat_z

MAX_LENGTH = timedelta(days=31)


@dataclass(frozen=True)
class WindowSpec:
    """A window that passed every rule, ready to store."""

    starts_at: datetime
    ends_at: datetime
    reason: str
    selector: str
    daemon_ids: tuple[str, ...] = ()
    capability: str | None = None
    region: str | None = None


def check(body: MaintenanceIn, *, now: datetime) -> WindowSpec:
    """The rules beyond each field's own: one selector, a window that runs forwards,
    reaches past now and is at most MAX_LENGTH long. InvalidInput names the fields."""
    details: dict[str, str] = {}
    given = {"daemonIds": body.daemon_ids, "capability": body.capability, "region": body.region}
    chosen = [field for field, value in given.items() if value is not None]
    if len(chosen) > 1:
        one = "give one of daemonIds, capability or region (or none, for the whole fleet), not several"
        details.update(dict.fromkeys(chosen, one))
    elif body.daemon_ids == []:
        details["daemonIds"] = "must list at least one daemon; leave it out for the whole fleet"
    starts_at = max(body.starts_at, now)
    if body.starts_at >= body.ends_at:
        details["from"] = "must be before to"
    elif body.ends_at <= now:
        details["to"] = "must be in the future: a window cannot cover only the past"
    elif body.ends_at - starts_at > MAX_LENGTH:
        details["to"] = (
            f"must be at most {MAX_LENGTH.days} days after from (or after now, if from is past)"
        )
    if details:
        summary = "; ".join(f"{field} {message}" for field, message in details.items())
        raise InvalidInput(f"Invalid request body: {summary}", details)
    if body.daemon_ids is not None:
        # Order kept for the echo, repeats dropped: a list naming a daemon twice covers it once.
        daemon_ids = tuple(dict.fromkeys(body.daemon_ids))
        return WindowSpec(starts_at, body.ends_at, body.reason, "daemons", daemon_ids)
    if body.capability is not None:
        return WindowSpec(starts_at, body.ends_at, body.reason, "capability", capability=body.capability)
    if body.region is not None:
        return WindowSpec(starts_at, body.ends_at, body.reason, "region", region=body.region)
    return WindowSpec(starts_at, body.ends_at, body.reason, "fleet")


def create(conn: Connection, spec: WindowSpec, *, now: datetime) -> dict[str, Any]:
    """Store the window; returns it as the API shows it."""
    with conn.begin():
        window = conn.execute(
            insert(maintenance_windows)
            .values(
                starts_at=spec.starts_at,
                ends_at=spec.ends_at,
                reason=spec.reason,
                selector=spec.selector,
                capability=spec.capability,
                region=spec.region,
                created_at=now,
            )
            .returning(maintenance_windows)
        ).one()
        if spec.daemon_ids:
            conn.execute(
                insert(maintenance_window_daemons),
                [{"window_id": window.id, "daemon_id": d} for d in spec.daemon_ids],
            )
    return wire(window, list(spec.daemon_ids), now=now)


def current_and_upcoming(conn: Connection, *, now: datetime) -> list[dict[str, Any]]:
    """Every window that has not ended, the soonest first."""
    w = maintenance_windows
    with conn.begin():
        windows = conn.execute(select(w).where(w.c.ends_at > now).order_by(w.c.starts_at, w.c.id)).all()
        targets = _daemon_ids(conn, [window.id for window in windows])
    return [wire(window, targets.get(window.id, []), now=now) for window in windows]


def end(conn: Connection, window_id: int, *, now: datetime) -> dict[str, Any] | None:
    """End a window now; None if there is no such window.

    A running window ends now and is kept (its planned time stays planned); one
    that has not started is cancelled, which removes it; one already over is
    left as it was. Each step is one conditional statement, so racing calls
    agree on what happened: the first to end it decides when (a racer that read
    the clock a moment earlier does not move the end back), the others answer
    the window as that one left it.
    """
    w = maintenance_windows
    with conn.begin():
        targets = _daemon_ids(conn, [window_id]).get(window_id, [])
        ended = conn.execute(
            update(w)
            .where(
                w.c.id == window_id,
                w.c.starts_at < now,
                w.c.ends_at > now,
                w.c.ended_early_at.is_(None),
            )
            .values(ends_at=now, ended_early_at=now)
            .returning(w)
        ).first()
        if ended is not None:
            return wire(ended, targets, now=now)
        cancelled = conn.execute(
            delete(w).where(w.c.id == window_id, w.c.starts_at >= now).returning(w)
        ).first()
        if cancelled is not None:
            return {**wire(cancelled, targets, now=now), "state": "cancelled"}
        over = conn.execute(select(w).where(w.c.id == window_id)).first()
    return None if over is None else wire(over, targets, now=now)


def prune(conn: Connection, *, before: datetime) -> int:
    """Delete windows that ended before ``before`` (with the history they covered); how many went."""
    w, m = maintenance_windows, maintenance_window_daemons
    with conn.begin():
        old = select(w.c.id).where(w.c.ends_at < before).scalar_subquery()
        # Children first: SQLite does not enforce the foreign key's cascade.
        conn.execute(delete(m).where(m.c.window_id.in_(old)))
        return conn.execute(delete(w).where(w.c.ends_at < before)).rowcount


def _daemon_ids(conn: Connection, window_ids: list[int]) -> dict[int, list[str]]:
    m = maintenance_window_daemons
    found: dict[int, list[str]] = {}
    if window_ids:
        rows = conn.execute(
            select(m.c.window_id, m.c.daemon_id)
            .where(m.c.window_id.in_(window_ids))
            .order_by(m.c.daemon_id)
        )
        for window_id, daemon_id in rows:
            found.setdefault(window_id, []).append(daemon_id)
    return found


def state(window: Row[Any], *, now: datetime) -> str:
    """upcoming, active or ended, at ``now``."""
    if now < window.starts_at:
        return "upcoming"
    return "active" if now < window.ends_at else "ended"


def wire(window: Row[Any], daemon_ids: list[str], *, now: datetime) -> dict[str, Any]:
    """A window as the API and the CLI show it."""
    return {
        "id": window.id,
        "from": isoformat_z(window.starts_at),
        "to": isoformat_z(window.ends_at),
        "reason": window.reason,
        "daemonIds": daemon_ids if window.selector == "daemons" else None,
        "capability": window.capability,
        "region": window.region,
        "state": state(window, now=now),
        "createdAt": isoformat_z(window.created_at),
        "endedEarlyAt": isoformat_z(window.ended_early_at) if window.ended_early_at else None,
    }
