"""Which history events are worth an alert, and what the alert says."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from app.registry.wire import isoformat_z


def alert_type(event: Row[Any], previous: Row[Any] | None) -> str | None:
    """The alert an event raises, judged against the daemon's event before it."""
    if event.kind == "stale":
        return "daemon.stale"
    if event.kind == "deregistered":
        return "daemon.deregistered"
    if event.kind == "registered":
        return "daemon.recovered" if previous is not None and previous.kind == "stale" else None
    if event.kind == "status_changed":
        if event.status == "unhealthy":
            return "daemon.unhealthy"
        if previous is not None and previous.status == "unhealthy":
            return "daemon.healthy_again"
    return None


def payload(event: Row[Any], kind: str) -> dict[str, Any]:
    """The webhook body. ``id`` names the event, so receivers can drop repeats."""
    return {
        "id": f"evt_{event.id}",
        "type": kind,
        "daemonId": event.daemon_id,
        "occurredAt": isoformat_z(event.occurred_at),
        "recordedAt": isoformat_z(event.recorded_at),
        "daemon": event.state,
    }


def region_payload(event: Row[Any], kind: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The webhook body of a region alert (app/alerts/region_outages.py); ``rgn_`` ids."""
    return {
        "id": f"rgn_{event.id}",
        "type": kind,
        "region": event.region,
        "occurredAt": isoformat_z(event.occurred_at),
        "recordedAt": isoformat_z(event.recorded_at),
        **extra,
    }
