"""The durable outbox: alerts are rows first and HTTP requests second.

1. ``enqueue`` turns history events not yet handled into one delivery row per
   webhook URL, in the transaction that marks the events handled. A unique
   (event, url) pair keeps it at one row however many watchers race. An event
   inside a maintenance window gets its rows too, marked 'suppressed' (and the
   window), so operators can see what was kept quiet; they are never sent.
2. ``claim`` leases due deliveries (pushing their next attempt past the lease)
   so no other watcher sends them meanwhile; a watcher killed mid-delivery
   simply lets the lease run out and the delivery is sent again (at least once;
   the event id lets receivers drop repeats).
3. ``settle`` records each outcome: delivered, retry later with exponential
   backoff and jitter, or failed for good after the last attempt.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, select, update

from app.alerts import rules
from app.alerts.webhooks import Outcome
from app.maintenance import coverage
from app.models import alert_deliveries, daemon_events
from app.store.backend import backend

LEASE = timedelta(seconds=60)
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=15)
# Older unhandled events (alerting newly switched on, or long off) are too late to page anyone.
MAX_EVENT_AGE = timedelta(hours=1)
BATCH = 100


@dataclass(frozen=True)
class Policy:
    urls: tuple[str, ...]
    alert_types: frozenset[str]
    max_attempts: int


def enqueue(conn: Connection, policy: Policy, *, now: datetime) -> int:
    """Create deliveries for events not yet handled; return how many were created."""
    created = 0
    with conn.begin():
        events = conn.execute(
            select(daemon_events)
            .where(daemon_events.c.alerted_at.is_(None))
            .order_by(daemon_events.c.id)
            .limit(BATCH)
            # Two watchers take different events instead of queueing on the same rows.
            .with_for_update(skip_locked=True)
        ).all()
        for event in events:
            kind = _alert_worth_sending(conn, event, policy, now)
            window = _maintenance_window(conn, event) if kind else None
            for url in policy.urls if kind else ():
                created += backend(conn).insert_ignoring_conflicts(
                    conn,
                    alert_deliveries,
                    {
                        "event_id": event.id,
                        "alert_type": kind,
                        "url": url,
                        "payload": rules.payload(event, kind),
                        "state": "pending" if window is None else "suppressed",
                        "maintenance_window_id": window,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    },
                )
        if events:
            conn.execute(
                update(daemon_events)
                .where(daemon_events.c.id.in_([e.id for e in events]))
                .values(alerted_at=now)
            )
    return created


def _alert_worth_sending(conn: Connection, event: Row[Any], policy: Policy, now: datetime) -> str | None:
    if not policy.urls or now - event.recorded_at > MAX_EVENT_AGE:
        return None
    previous = conn.execute(
        select(daemon_events.c.kind, daemon_events.c.status)
        .where(daemon_events.c.daemon_id == event.daemon_id, daemon_events.c.id < event.id)
        .order_by(daemon_events.c.id.desc())
        .limit(1)
    ).first()
    kind = rules.alert_type(event, previous)
    return kind if kind in policy.alert_types else None


def _maintenance_window(conn: Connection, event: Row[Any]) -> int | None:
    """The maintenance window covering the event's daemon when it happened, if any."""
    capabilities = (event.state or {}).get("capabilities") or []
    windows = coverage.active_windows(conn, at=event.occurred_at)
    window = coverage.covering(windows, event.daemon_id, capabilities)
    return None if window is None else window.id


def due_urls(conn: Connection, *, now: datetime) -> list[str]:
    """The receivers that have deliveries due (including URLs no longer configured)."""
    d = alert_deliveries
    with conn.begin():
        return list(
            conn.execute(
                select(d.c.url).where(d.c.state == "pending", d.c.next_attempt_at <= now).distinct()
            ).scalars()
        )


def claim(
    conn: Connection, *, now: datetime, limit: int = 20, url: str | None = None
) -> list[Row[Any]]:
    """Lease up to ``limit`` due deliveries (to ``url``, if given) and count the attempt."""
    d = alert_deliveries
    due = (
        select(d.c.id)
        .where(d.c.state == "pending", d.c.next_attempt_at <= now)
        .order_by(d.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if url is not None:
        due = due.where(d.c.url == url)
    with conn.begin():
        # The outer conditions are re-checked after a row lock wait, so a delivery
        # another watcher leased meanwhile is not leased twice.
        return conn.execute(
            update(d)
            .where(d.c.id.in_(due.scalar_subquery()), d.c.state == "pending", d.c.next_attempt_at <= now)
            .values(next_attempt_at=now + LEASE, attempts=d.c.attempts + 1)
            .returning(d)
        ).all()


def settle(
    conn: Connection, results: Sequence[tuple[Row[Any], Outcome]], policy: Policy, *, now: datetime
) -> None:
    """Record what happened to each claimed delivery."""
    d = alert_deliveries
    with conn.begin():
        for delivery, outcome in results:
            if outcome.delivered:
                values: dict[str, Any] = {"state": "delivered", "delivered_at": now, "last_error": None}
            elif outcome.retry and delivery.attempts < policy.max_attempts:
                values = {"next_attempt_at": now + backoff(delivery.attempts), "last_error": outcome.detail}
            else:
                values = {"state": "failed", "failed_at": now, "last_error": outcome.detail}
            # Only the lease holder settles: a lease that ran out belongs to someone else now.
            conn.execute(
                update(d)
                .where(and_(d.c.id == delivery.id, d.c.attempts == delivery.attempts, d.c.state == "pending"))
                .values(values)
            )


def backoff(attempts: int) -> timedelta:
    """Exponential, capped, with jitter so that receivers are not hit in lockstep."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempts - 1))
    return ceiling * random.uniform(0.5, 1.0)


def redeliver(conn: Connection, delivery_id: int, *, now: datetime) -> bool:
    """Queue a delivery again from scratch (after a receiver was fixed)."""
    with conn.begin():
        return (
            conn.execute(
                update(alert_deliveries)
                .where(alert_deliveries.c.id == delivery_id)
                .values(state="pending", attempts=0, next_attempt_at=now, delivered_at=None, failed_at=None)
            ).rowcount
            == 1
        )


def recent(conn: Connection, *, state: str | None = None, limit: int = 20) -> list[Row[Any]]:
    query = select(alert_deliveries).order_by(alert_deliveries.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(alert_deliveries.c.state == state)
    return conn.execute(query).all()
