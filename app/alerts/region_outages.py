"""Region outages: one alert when a region's daemons fall silent together, not one per daemon.

The rule (like Kubernetes' zone disruption): a region is **disrupted** when
more than half of its daemons, and at least ``MIN_SILENT``, fell silent within
one TTL -- counting the daemons whose 'stale' event took effect within the last
TTL and that are still down (it is their open event), against those plus the
region's live daemons. The watcher then raises ``region.disrupted`` once
(app/alerts/open_alerts.py), naming the region and its silent daemons, and folds
their 'stale' events into it: they raise no ``daemon.stale`` alert each, nor do
the 'stale' events of the region's daemons that fall silent while it stays
disrupted. History and uptime keep every daemon's own events; only alerting
changes, and /health is untouched.

Telling a region outage from one dead daemon takes up to a TTL after the first
silence, so while a region *could* be disrupted (it has at least ``MIN_SILENT``
daemons) the 'stale' alerts of its daemons are held for one TTL (at most
``MAX_HOLD``) from the moment each went stale (``outbox.Hold``), then sent if no
disruption came of it.
Daemons without a region are never held.

The region **recovers** once its daemons still down since the disruption (a
'stale' event at most a TTL before it was raised, and no registration or
deregistration since) no longer meet the rule against its live daemons: more
than half of them are back, or fewer than ``MIN_SILENT`` remain down. Then
``region.recovered`` is sent once, naming who is back and who is still silent;
the registrations of the region's daemons while it was disrupted raise no
``daemon.recovered`` alert each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from app.alerts import open_alerts, outbox
from app.models import alert_events, daemon_events, daemons
from app.models import open_alerts as open_alerts_table
from app.registry import expiry

log = logging.getLogger(__name__)

MIN_SILENT = 3
# The longest a stale alert is held: well inside the outbox's MAX_EVENT_AGE, past which an
# event is too old to page anyone, whatever the TTL.
MAX_HOLD = timedelta(minutes=10)
DISRUPTED, RECOVERED = "region.disrupted", "region.recovered"


def disrupted(silent: int, live: int) -> bool:
    """The rule: at least MIN_SILENT silent daemons, and more than half of the region."""
    return silent >= MIN_SILENT and 2 * silent > silent + live


def ongoing(conn: Connection) -> set[str]:
    """The regions whose disruption has not ended."""
    return open_alerts.subjects(conn, DISRUPTED)


@dataclass
class _Region:
    live: int = 0
    # Daemons whose 'stale' event is their open one: id -> (event id, when it went stale).
    down: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    def down_since(self, moment: datetime) -> dict[str, int]:
        return {daemon: event for daemon, (event, at) in self.down.items() if at > moment}


def evaluate(conn: Connection, policy: outbox.Policy, *, now: datetime, ttl: timedelta) -> outbox.Hold:
    """Raise and recover region disruptions, fold their daemons' events; what ``enqueue`` must hold.

    History events written after this looked (past the horizon) wait for the
    next tick, so none slips past the decision. With ``region.disrupted`` left
    out of ALERT_EVENTS nothing is held or folded: daemons alert one by one.
    """
    with conn.begin():
        horizon = conn.execute(select(func.coalesce(func.max(daemon_events.c.id), 0))).scalar_one()
        if DISRUPTED not in policy.alert_types:
            return outbox.Hold(horizon)
        raised = dict(
            conn.execute(
                select(open_alerts_table.c.subject, open_alerts_table.c.raised_at).where(
                    open_alerts_table.c.alert_type == DISRUPTED
                )
            ).all()
        )
        earliest = min([now, *raised.values()]) - ttl
        held: set[int] = set()
        # A disrupted region is followed even when none of its daemons is left to count.
        regions = _regions(conn, now=now, since=earliest, horizon=horizon, disrupted_now=set(raised))
        for name, region in sorted(regions.items()):
            if name in raised:
                _follow(conn, name, region, raised_at=raised[name], now=now, ttl=ttl, horizon=horizon)
                continue
            recent = region.down_since(now - ttl)
            if disrupted(len(recent), region.live):
                payload = {"region": name, "daemons": sorted(recent), "silent": len(recent),
                           "active": region.live}
                if open_alerts.raise_once(conn, DISRUPTED, name, payload, now=now):
                    _fold(conn, recent.values(), now=now)
                    log.warning("region %s disrupted: %d of %d daemons silent (%s)", name, len(recent),
                                len(recent) + region.live, ", ".join(sorted(recent)))
            if len(recent) + region.live >= MIN_SILENT:
                # Folded already if just raised (by anyone); else wait and see, a while.
                held |= set(region.down_since(now - min(ttl, MAX_HOLD)).values())
    return outbox.Hold(horizon, frozenset(held))


def _regions(
    conn: Connection, *, now: datetime, since: datetime, horizon: int, disrupted_now: set[str]
) -> dict[str, _Region]:
    """The regions with daemons that went stale after ``since`` and are still down, and
    ``disrupted_now``: each with those daemons and its live count (none: nothing to count)."""
    found: dict[str, _Region] = {name: _Region() for name in disrupted_now}
    down = conn.execute(
        select(daemon_events.c.id, daemon_events.c.daemon_id, daemon_events.c.occurred_at,
               daemon_events.c.state).where(
            daemon_events.c.kind == "stale",
            daemon_events.c.ended_at.is_(None),
            daemon_events.c.occurred_at > since,
            daemon_events.c.id <= horizon,
        )
    )
    for event_id, daemon_id, occurred_at, state in down:
        # The DaemonState of the moment (wire.py) carries the daemon's region.
        region = _region_of(state)
        if region is not None:
            found.setdefault(region, _Region()).down[daemon_id] = (event_id, occurred_at)
    if found:
        # Counted only for the regions in question, on the (region, expires_at) index.
        live = conn.execute(
            select(daemons.c.region, func.count())
            .where(daemons.c.region.in_(sorted(found)), expiry.live(now))
            .group_by(daemons.c.region)
        )
        for region, count in live:
            found[region].live = count
    return found


def _region_of(state: dict[str, Any] | None) -> str | None:
    return (state or {}).get("region")


def _follow(
    conn: Connection, name: str, region: _Region, *, raised_at: datetime, now: datetime,
    ttl: timedelta, horizon: int,
) -> None:
    """A disrupted region: fold what its daemons' going and coming raise; recover when they are back."""
    down = region.down_since(raised_at - ttl)
    _fold(conn, down.values(), now=now)
    returns = conn.execute(
        select(daemon_events.c.id, daemon_events.c.state).where(
            daemon_events.c.kind == "registered",
            daemon_events.c.alerted_at.is_(None),
            daemon_events.c.occurred_at >= raised_at,
            daemon_events.c.id <= horizon,
        )
    )
    _fold(conn, [event_id for event_id, state in returns if _region_of(state) == name], now=now)
    if disrupted(len(down), region.live):
        return
    named = conn.execute(
        select(alert_events.c.payload)
        .where(alert_events.c.alert_type == DISRUPTED, alert_events.c.subject == name)
        .order_by(alert_events.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    silent = set((named or {}).get("daemons", [])) | set(down)
    payload = {"region": name, "daemons": sorted(silent - set(down)), "stillSilent": sorted(down),
               "active": region.live}
    if open_alerts.recover_once(conn, DISRUPTED, name, RECOVERED, payload, now=now):
        log.info("region %s recovered: %d back, %d still silent", name, len(payload["daemons"]), len(down))


def _fold(conn: Connection, events: Iterable[int], *, now: datetime) -> None:
    """Mark history events as handled by a region alert: they raise none of their own."""
    event_ids = list(events)
    if event_ids:
        conn.execute(
            update(daemon_events)
            .where(daemon_events.c.id.in_(event_ids), daemon_events.c.alerted_at.is_(None))
            .values(alerted_at=now)
        )
