"""The watcher: notices expiries without anyone polling, and sends the alerts.

Run it beside gunicorn (``flask --app wsgi daemons watch``); several may run on
several hosts. Each tick: note that the service is alive (granting grace after
an outage of our own), record newly expired daemons as stale, move the
heartbeats' task counts into time buckets, raise or close error-rate alerts,
turn new events into outbox rows, and hand what is due to the receivers' lanes
without waiting for answers — each receiver has its own lane, so one slow
receiver costs the others nothing, this tick or the next.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row
from sqlalchemy.exc import DBAPIError

from app.alerts import error_rate, outbox, region_outages, senders
from app.alerts.lanes import Lanes
from app.clock import Clock
from app.registry import expiry, outage_grace, service
from app.task_metrics import buckets
from config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watcher:
    """What a watcher works with: no Flask app, so it runs and tests on its own."""

    settings: Settings
    clock: Clock
    engine: Engine


@dataclass
class TickReport:
    graced: int = 0
    stale: list[str] = field(default_factory=list)
    sampled: int = 0
    error_rate_alerts: error_rate.Changes = field(default_factory=error_rate.Changes)
    enqueued: int = 0
    sent: int = 0


def policy(settings: Settings) -> outbox.Policy:
    return outbox.Policy(
        urls=settings.alert_webhook_urls,
        alert_types=frozenset(settings.alert_events),
        max_attempts=settings.alert_max_attempts,
        channels=settings.alert_channels,
        templates=settings.alert_templates,
    )


def tick(watcher: Watcher, lanes: Lanes) -> TickReport:
    """One pass of the watcher's work. Database errors propagate to the caller.

    Due deliveries are handed to ``lanes`` and settled there as their answers
    arrive; the tick does not wait for them.
    """
    settings, clock = watcher.settings, watcher.clock
    ttl = expiry.ttl(settings.daemon_ttl_seconds)
    rules = policy(settings)
    error_rate_rule = error_rate.Rule.of(settings)
    report = TickReport()
    with watcher.engine.connect() as conn:
        now = clock.now()
        report.graced = outage_grace.observe(conn, now=now, ttl=ttl, create=True)
        if report.graced:
            log.warning("service was unreachable for over %s: %d daemons get grace", ttl, report.graced)
        report.stale = service.record_expiries(conn, now=now)
        report.sampled = buckets.sample(conn)
        if error_rate_rule is not None:
            report.error_rate_alerts = error_rate.evaluate(conn, error_rate_rule, now=now)
        hold = region_outages.evaluate(conn, rules, now=now, ttl=ttl)
        report.enqueued = outbox.enqueue(conn, rules, now=now, hold=hold)
        due: list[Row[Any]] = []
        for url in outbox.due_urls(conn, now=now):
            # A lane still busy with a slow receiver takes no more than it has room for.
            if room := lanes.room(url):
                due += outbox.claim(conn, now=now, limit=room, url=url)
    # No database connection is held while waiting on receivers.
    for delivery in due:
        lanes.send(delivery.url, lambda d=delivery: _deliver(d, watcher, rules))
    report.sent = len(due)
    return report


def _deliver(delivery: Row[Any], watcher: Watcher, rules: outbox.Policy) -> None:
    """Send one claimed delivery and record its outcome at once."""
    outcome = senders.send(delivery.url, delivery.payload, watcher.settings)
    level = logging.INFO if outcome.delivered else logging.WARNING
    log.log(level, "alert %s %s to %s: %s", delivery.payload["id"], delivery.alert_type, delivery.url, outcome.detail)
    try:
        with watcher.engine.connect() as conn:
            outbox.settle(conn, [(delivery, outcome)], rules, now=watcher.clock.now())
    except DBAPIError as exc:
        # Unrecorded, the delivery is sent again when its lease runs out: at least once.
        log.warning("could not record alert %s: %s", delivery.payload["id"], type(exc.orig).__name__)


def run(watcher: Watcher, stop: threading.Event) -> None:
    """Tick every WATCH_INTERVAL_SECONDS until ``stop`` is set; survive database outages.

    On the way out, deliveries in flight are finished and the watcher signs off,
    so the time until a watcher runs again is not taken for an outage.
    """
    interval = watcher.settings.watch_interval_seconds
    with Lanes() as lanes:
        while not stop.is_set():
            try:
                report = tick(watcher, lanes)
                if report.stale:
                    log.info("stale: %s", ", ".join(report.stale))
            except DBAPIError as exc:
                log.warning("database unavailable, retrying next tick: %s", type(exc.orig).__name__)
            stop.wait(interval)
    try:
        with watcher.engine.connect() as conn:
            outage_grace.sign_off(conn)
    except DBAPIError as exc:
        log.warning("could not sign off (the next watcher may grant grace): %s", type(exc.orig).__name__)
