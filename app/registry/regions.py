"""Regions: which daemons a region filter reads, and each region's counts (GET /api/regions).

A daemon's region is fixed at registration (its own ``region``, else the
instance's SERVICE_REGION, else none). Counting never reaps: ``stale`` is the
rows whose TTL ran out and that /health has not yet reported, exactly the ones
/health?region= would report next.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Connection, and_, case, func, select, true

from app.models import daemons
from app.registry import expiry
from app.registry.wire import isoformat_z


def in_region(region: str | None | BindParameter[str]) -> ColumnElement[bool]:
    """The rows a region filter reads: one region's, or (``None``) every row."""
    return daemons.c.region == region if region is not None else true()


def _count(condition: ColumnElement[bool]) -> Any:
    return func.count(case((condition, 1)))


def summaries(conn: Connection, *, now: datetime, disrupted: set[str]) -> list[dict[str, Any]]:
    """One entry per region with daemons in the registry or an ongoing disruption.

    Daemons without a region are counted under ``"region": null``, last, so the
    entries add up to the whole fleet. ``disrupted`` names the regions whose
    outage is ongoing (app/alerts/region_outages.py).
    """
    live = expiry.live(now)
    rows = conn.execute(
        select(
            daemons.c.region,
            _count(live).label("active"),
            _count(expiry.expired(now)).label("stale"),
            _count(and_(live, daemons.c.status == "degraded")).label("degraded"),
            _count(and_(live, daemons.c.status == "unhealthy")).label("unhealthy"),
            func.max(daemons.c.last_heartbeat).label("last_heartbeat"),
        ).group_by(daemons.c.region)
    ).all()
    found = {row.region: row for row in rows}
    names = sorted(name for name in found.keys() | disrupted if name is not None)
    if None in found:
        names.append(None)
    return [_summary(name, found.get(name), name in disrupted) for name in names]


def _summary(region: str | None, row: Any, disrupted: bool) -> dict[str, Any]:
    last = row.last_heartbeat if row is not None else None
    return {
        "region": region,
        "active": row.active if row is not None else 0,
        "stale": row.stale if row is not None else 0,
        "degraded": row.degraded if row is not None else 0,
        "unhealthy": row.unhealthy if row is not None else 0,
        "disrupted": disrupted,
        "lastHeartbeat": isoformat_z(last) if last is not None else None,
    }
