"""Region outages: one alert when a region's daemons fall silent together, not one per daemon.

The rule (like Kubernetes' zone disruption): a region is **disrupted** when
more than half of its daemons, and at least ``MIN_SILENT``, fell silent within
one TTL — counting the daemons whose 'stale' event took effect within the last
TTL and that are still down (the event is their open one), against those plus
the region's live daemons. The watcher then records one ``disrupted`` region
event naming them and sends one ``region.disrupted`` alert; their 'stale'
events (and those of daemons of the region that fall silent while it stays
disrupted) are folded into it and raise no ``daemon.stale`` alert. History and
uptime keep every daemon's own events: only alerting changes.

Telling a region outage from a daemon that died takes up to one TTL after the
first silence, so while a region *could* become disrupted (it has at least
``MIN_SILENT`` daemons) the 'stale' alerts of its daemons are held for one TTL
from the moment each went stale (``enqueue``'s ``Hold``), then sent if no
disruption came of it. Daemons without a region are never held.

The region **recovers** when the disruption's daemons that are still down (no
registration or deregistration since their 'stale' event) no longer meet the
rule against the region's live daemons: more than half of them came back, or
fewer than ``MIN_SILENT`` remain down. One ``recovered`` event closes the
disruption and sends ``region.recovered``; the 'registered' events of its
daemons that came back meanwhile raise no ``daemon.recovered`` alert each.

Several watchers may run: a unique index on a region's open disruption lets
only one of them record it, and a conditional UPDATE only one close it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from app.alerts import outbox, rules
from app.models import daemon_events, daemons, region_events
from app.registry import expiry
from app.registry.wire import isoformat_z
from app.store.backend import backend

MIN_SILENT = 3
DISRUPTED, RECOVERED = "region.disrupted", "region.recovered"


def disrupted(silent: int, live: int) -> bool:
    """The rule: at least MIN_SILENT silent daemons, and more than half of the region."""
    return silent >= MIN_SILENT and 2 * silent > silent + live


def ongoing(conn: Connection) -> set[str]:
    """The regions whose disruption has not ended."""
    return set(
        conn.execute(
            select(region_events.c.region).where(
                region_events.c.kind == "disrupted", region_events.c.ended_at.is_(None)
            )
        ).scalars()
    )


@dataclass
class _Region:
    live: int = 0
    silent: dict[str, int] | None = None  # daemon id -> its open 'stale' event's id

    def __post_init__(self) -> None:
        self.silent = self.silent or {}


def evaluate(conn: Connection, policy: outbox.Policy, *, now: datetime, ttl: timedelta) -> outbox.Hold:
    """Record disruptions and recoveries, fold their daemons' events; what ``enqueue`` must hold.

    Events written after this looked (the horizon) wait for the next tick, so
    none slips past the decision. With ``region.disrupted`` left out of
    ALERT_EVENTS nothing is held or folded: daemons alert one by one as before.
    """
    with conn.begin():
        horizon = conn.execute(select(func.coalesce(func.max(daemon_events.c.id), 0))).scalar_one()
        if DISRUPTED not in policy.alert_types:
            return outbox.Hold(horizon)
        regions = _regions(conn, now=now, ttl=ttl, horizon=horizon)
        open_disruptions = {
            row.region: row
            for row in conn.execute(
                select(region_events).where(
                    region_events.c.kind == "disrupted", region_events.c.ended_at.is_(None)
                )
            )
        }
        held: set[int] = set()
        for name, region in regions.items():
            if name in open_disruptions:
                continue
            if disrupted(len(region.silent), region.live):
                _record_disruption(conn, policy, name, region, now=now)
            elif len(region.silent) + region.live >= MIN_SILENT:
                held |= set(region.silent.values())
        for name, disruption in open_disruptions.items():
            _follow(conn, policy, disruption, regions.get(name, _Region()), now=now, horizon=horizon)
    return outbox.Hold(horizon, frozenset(held))


def _regions(conn: Connection, *, now: datetime, ttl: timedelta, horizon: int) -> dict[str, _Region]:
    """Each region's live daemons and its daemons that went stale within the TTL and stay down."""
    found: dict[str, _Region] = defaultdict(_Region)
    live = conn.execute(
        select(daemons.c.region, func.count())
        .where(expiry.live(now), daemons.c.region.is_not(None))
        .group_by(daemons.c.region)
    )
    for region, count in live:
        found[region].live = count
    silent = conn.execute(
        select(daemon_events.c.id, daemon_events.c.daemon_id, daemon_events.c.state).where(
            daemon_events.c.kind == "stale",
            daemon_events.c.ended_at.is_(None),
            daemon_events.c.occurred_at > now - ttl,
            daemon_events.c.id <= horizon,
        )
    )
    for event_id, daemon_id, state in silent:
        # The region is the DaemonState's at the time (wire.py), kept in the event.
        region = (state or {}).get("region")
        if region is not None:
            found[region].silent[daemon_id] = event_id
    return found


def _record_disruption(
    conn: Connection, policy: outbox.Policy, name: str, region: _Region, *, now: datetime
) -> None:
    silent = sorted(region.silent)
    values = {"region": name, "kind": "disrupted", "occurred_at": now, "recorded_at": now,
              "daemons": silent, "ended_at": None}
    # Another watcher may have recorded it first: its row wins, this one is dropped.
    if not backend(conn).insert_ignoring_conflicts(conn, region_events, values):
        return
    event = conn.execute(
        select(region_events).where(
            region_events.c.region == name,
            region_events.c.kind == "disrupted",
            region_events.c.ended_at.is_(None),
        )
    ).one()
    _fold(conn, list(region.silent.values()), now=now)
    extra = {"daemons": silent, "silent": len(silent), "active": region.live}
    outbox.add(conn, policy, event_id=event.id, kind=DISRUPTED,
               payload=rules.region_payload(event, DISRUPTED, extra), now=now)


def _follow(
    conn: Connection, policy: outbox.Policy, disruption: Row[Any], region: _Region, *,
    now: datetime, horizon: int,
) -> None:
    """An ongoing disruption: take in newly silent daemons, fold their events, end it on return."""
    named = set(disruption.daemons) | set(region.silent)
    _fold(conn, list(region.silent.values()), now=now)
    if named != set(disruption.daemons):
        conn.execute(
            update(region_events).where(region_events.c.id == disruption.id)
            .values(daemons=sorted(named))
        )
    # Their returns (registrations) are the region's recovery, not one alert each.
    returned_events = conn.execute(
        select(daemon_events.c.id).where(
            daemon_events.c.daemon_id.in_(named),
            daemon_events.c.kind == "registered",
            daemon_events.c.occurred_at >= disruption.occurred_at,
            daemon_events.c.alerted_at.is_(None),
            daemon_events.c.id <= horizon,
        )
    ).scalars().all()
    _fold(conn, returned_events, now=now)
    down = _still_down(conn, named)
    if disrupted(len(down), region.live):
        return
    closed = conn.execute(
        update(region_events)
        .where(region_events.c.id == disruption.id, region_events.c.ended_at.is_(None))
        .values(ended_at=now)
    ).rowcount
    if closed != 1:
        return  # another watcher ended it
    back = sorted(named - down)
    event = conn.execute(
        insert(region_events).values(region=disruption.region, kind="recovered", occurred_at=now,
                                     recorded_at=now, daemons=back, ended_at=None)
        .returning(region_events)
    ).one()
    extra = {"daemons": back, "stillSilent": sorted(down),
             "disruptedAt": isoformat_z(disruption.occurred_at)}
    outbox.add(conn, policy, event_id=event.id, kind=RECOVERED,
               payload=rules.region_payload(event, RECOVERED, extra), now=now)


def _still_down(conn: Connection, daemon_ids: set[str]) -> set[str]:
    """Which of ``daemon_ids`` have a 'stale' event as their latest (open) one."""
    if not daemon_ids:
        return set()
    return set(
        conn.execute(
            select(daemon_events.c.daemon_id).where(
                daemon_events.c.daemon_id.in_(daemon_ids),
                daemon_events.c.ended_at.is_(None),
                daemon_events.c.kind == "stale",
            )
        ).scalars()
    )


def _fold(conn: Connection, event_ids: list[int], *, now: datetime) -> None:
    """Mark daemon events as handled by a region alert: they raise none of their own."""
    if event_ids:
        conn.execute(
            update(daemon_events)
            .where(daemon_events.c.id.in_(event_ids), daemon_events.c.alerted_at.is_(None))
            .values(alerted_at=now)
        )
