"""Alerts that stay raised until they recover: each sent once, however many watchers race.

An open alert is a row keyed by (alert type, subject). Raising inserts it
unless it is there; recovering deletes it. Only the watcher whose statement
changed the row records the alert event (app/alerts/alert_events.py), in the
same transaction: on Postgres a second watcher's insert or delete waits for the
first one's commit and then changes nothing, so each raise and each recovery is
alerted exactly once. The state outlives any watcher, so a restart does not
alert again for what is still wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from app.alerts import alert_events
from app.models import open_alerts
from app.store.backend import backend


def subjects(conn: Connection, alert_type: str) -> set[str]:
    """The subjects for which ``alert_type`` is raised now."""
    return set(
        conn.execute(select(open_alerts.c.subject).where(open_alerts.c.alert_type == alert_type)).scalars()
    )


def raise_once(
    conn: Connection, alert_type: str, subject: str, payload: dict[str, Any], *, now: datetime
) -> bool:
    """Raise ``alert_type`` for ``subject`` unless it is raised; True when this call raised it."""
    opened = backend(conn).insert_ignoring_conflicts(
        conn, open_alerts, {"alert_type": alert_type, "subject": subject, "raised_at": now}
    )
    if opened:
        alert_events.record(conn, alert_type, subject, payload, now=now)
    return bool(opened)


def recover_once(
    conn: Connection,
    alert_type: str,
    subject: str,
    recovery_type: str,
    payload: dict[str, Any],
    *,
    now: datetime,
) -> bool:
    """Close ``alert_type`` for ``subject`` with a ``recovery_type`` alert; True when this call did."""
    closed = conn.execute(
        delete(open_alerts).where(open_alerts.c.alert_type == alert_type, open_alerts.c.subject == subject)
    ).rowcount
    if closed:
        alert_events.record(conn, recovery_type, subject, payload, now=now)
    return bool(closed)
