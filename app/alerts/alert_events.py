"""Alert events that are not a daemon's status transition, e.g. a daemon's error rate.

``daemon_events`` is the span chain uptime is computed from and holds status
transitions only; an alert about anything else is recorded here instead, one
row per alert: its type, its ``subject`` (a daemon id, or another name such as
a region), when it happened and a ``payload`` of the figures it reports. The
outbox (app/alerts/outbox.py) turns both tables into deliveries the same way:
at least once, with backoff and per-receiver lanes, filtered by ALERT_EVENTS.

To raise an alert once per condition, however many watchers race, record it
through ``app/alerts/open_alerts.py``; call ``record`` directly for one-off alerts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert

from app.models import alert_events
from app.registry.wire import isoformat_z

# The webhook id's prefix: receivers deduplicate on the id, and history events are evt_<id>.
ID_PREFIX = "alert_"


def record(conn: Connection, alert_type: str, subject: str, payload: dict[str, Any], *, now: datetime) -> int:
    """Add an alert event (in the caller's transaction); return its id."""
    return conn.execute(
        insert(alert_events)
        .values(
            alert_type=alert_type, subject=subject, occurred_at=now, recorded_at=now, payload=payload
        )
        .returning(alert_events.c.id)
    ).scalar_one()


def webhook_body(event: Row[Any]) -> dict[str, Any]:
    """The webhook body: the common fields every alert has, then the event's own figures."""
    return {
        "id": f"{ID_PREFIX}{event.id}",
        "type": event.alert_type,
        "occurredAt": isoformat_z(event.occurred_at),
        "recordedAt": isoformat_z(event.recorded_at),
        **event.payload,
    }


def prune(conn: Connection, *, before: datetime) -> int:
    """Forget alert events that happened before ``before`` (``daemons prune-history``)."""
    with conn.begin():
        return conn.execute(delete(alert_events).where(alert_events.c.occurred_at < before)).rowcount
