"""The durable outbox: alerts are rows first and HTTP requests second.

1. ``enqueue`` turns events not yet handled -- status transitions from the
   history (``daemon_events``) and other alerts (``alert_events``) -- into one
   delivery row per receiver (each webhook URL and each channel that wants the
   alert type), in the transaction that marks the events handled. A unique
   (source table, event, url) keeps it at one row however many watchers race.
   A channel's row names it by its ``target`` (fingerprint and redacted URL),
   never by its secret URL. An event about a daemon inside a maintenance window
   gets its rows too, marked 'suppressed' (and the window), so operators can
   see what was kept quiet; they are never sent.
2. ``claim`` leases due deliveries (pushing their next attempt past the lease)
   so no other watcher sends them meanwhile; a watcher killed mid-delivery
   simply lets the lease run out and the delivery is sent again (at least once;
   the event id lets receivers drop repeats).
3. ``settle`` records each outcome: delivered, retry later with exponential
   backoff and jitter, or failed for good after the last attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Table, and_, select, update

from app.alerts import messages, rules
from app.alerts.alert_events import webhook_body
from app.alerts.channels import Channel
from app.alerts.webhooks import Outcome
from app.maintenance import coverage
from app.models import alert_deliveries, alert_events, daemon_events, daemons
from app.store.backend import backend

LEASE = timedelta(seconds=60)
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=15)
# Older unhandled events (alerting newly switched on, or long off) are too late to page anyone.
MAX_EVENT_AGE = timedelta(hours=1)
BATCH = 100


@dataclass(frozen=True)
class _Source:
    """A table of events the outbox turns into deliveries, and how it reads one."""

    table: Table
    # The alert an event raises (None: none) and the event it was judged against.
    judge: Callable[[Connection, Row[Any]], tuple[str | None, Row[Any] | None]]
    # The webhook body, and the message for people (with the templates that override the defaults).
    body: Callable[[Row[Any], str], dict[str, Any]]
    message: Callable[[Row[Any], str, Row[Any] | None, tuple[messages.MessageTemplate, ...]], dict[str, Any]]


@dataclass(frozen=True)
class Policy:
    urls: tuple[str, ...]
    alert_types: frozenset[str]
    max_attempts: int
    channels: tuple[Channel, ...] = ()
    templates: tuple[messages.MessageTemplate, ...] = ()

    def receivers(
        self, source: _Source, event: Row[Any], kind: str, previous: Row[Any] | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Where an alert goes, and what each receiver gets: the webhook body, or a message for people."""
        to_webhooks = [(url, source.body(event, kind)) for url in self.urls]
        wanting = [c for c in self.channels if c.wants(kind)]
        message = source.message(event, kind, previous, self.templates) if wanting else {}
        return to_webhooks + [(channel.target, message) for channel in wanting]


def _judge_status_transition(conn: Connection, event: Row[Any]) -> tuple[str | None, Row[Any] | None]:
    # A status event means something only against the daemon's event before it.
    previous = conn.execute(
        select(daemon_events.c.kind, daemon_events.c.status, daemon_events.c.occurred_at)
        .where(daemon_events.c.daemon_id == event.daemon_id, daemon_events.c.id < event.id)
        .order_by(daemon_events.c.id.desc())
        .limit(1)
    ).first()
    return rules.alert_type(event, previous), previous


SOURCES = (
    _Source(daemon_events, _judge_status_transition, rules.payload, messages.render),
    # Recorded as the alert it is (app/alerts/alert_events.py).
    _Source(
        alert_events,
        lambda _conn, event: (event.alert_type, None),
        lambda event, _kind: webhook_body(event),
        lambda event, kind, _previous, templates: messages.render_alert_event(event, kind, templates),
    ),
)


@dataclass(frozen=True)
class Hold:
    """History events ``enqueue`` leaves for a later tick: any after ``horizon``, and ``event_ids``."""

    horizon: int
    event_ids: frozenset[int] = frozenset()


def enqueue(conn: Connection, policy: Policy, *, now: datetime, hold: Hold | None = None) -> int:
    """Create deliveries for events not yet handled, from every source; return how many were created.

    ``hold`` names history events to leave unhandled for a later tick (app/alerts/region_outages.py).
    """
    return sum(
        _enqueue_from(conn, source, policy, now, hold if source.table is daemon_events else None)
        for source in SOURCES
    )


def _enqueue_from(conn: Connection, source: _Source, policy: Policy, now: datetime, hold: Hold | None) -> int:
    table = source.table
    pending = table.c.alerted_at.is_(None)
    if hold is not None:
        pending &= table.c.id <= hold.horizon
        if hold.event_ids:
            pending &= table.c.id.not_in(sorted(hold.event_ids))
    created = 0
    with conn.begin():
        events = conn.execute(
            select(table)
            .where(pending)
            .order_by(table.c.id)
            .limit(BATCH)
            # Two watchers take different events instead of queueing on the same rows.
            .with_for_update(skip_locked=True)
        ).all()
        for event in events:
            # An alert that is not to be sent at all stops here, before it fans out to receivers.
            kind, previous = _alert_worth_sending(conn, source, event, policy, now)
            window = _maintenance_window(conn, source, event) if kind else None
            for url, payload in policy.receivers(source, event, kind, previous) if kind else ():
                created += backend(conn).insert_ignoring_conflicts(
                    conn,
                    alert_deliveries,
                    {
                        "source": table.name,
                        "event_id": event.id,
                        "alert_type": kind,
                        "url": url,
                        "payload": payload,
                        "state": "pending" if window is None else "suppressed",
                        "maintenance_window_id": window,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    },
                )
        if events:
            conn.execute(
                update(table).where(table.c.id.in_([e.id for e in events])).values(alerted_at=now)
            )
    return created


def _alert_worth_sending(
    conn: Connection, source: _Source, event: Row[Any], policy: Policy, now: datetime
) -> tuple[str | None, Row[Any] | None]:
    """The alert ``event`` raises, if any is to be sent, and the event it is judged against."""
    if not (policy.urls or policy.channels) or now - event.recorded_at > MAX_EVENT_AGE:
        return None, None
    kind, previous = source.judge(conn, event)
    return (kind if kind in policy.alert_types else None), previous


def _maintenance_window(conn: Connection, source: _Source, event: Row[Any]) -> int | None:
    """The maintenance window covering the event's daemon when it happened, if any.

    A history event carries the daemon's state; an alert event names its daemon in
    its figures, or, for a region's outage, only its region (covered by a window
    over that region or the whole fleet).
    """
    if source.table is daemon_events:
        state = event.state or {}
        daemon_id, capabilities, region = event.daemon_id, state.get("capabilities") or [], state.get("region")
    else:
        daemon_id = event.payload.get("daemonId")
        row = None if daemon_id is None else conn.execute(
            select(daemons.c.capabilities, daemons.c.region).where(daemons.c.daemon_id == daemon_id)
        ).first()
        capabilities = row.capabilities if row is not None else []
        region = row.region if row is not None else event.payload.get("region")
    windows = coverage.active_windows(conn, at=event.occurred_at)
    window = coverage.covering(windows, daemon_id, capabilities, region)
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
