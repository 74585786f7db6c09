"""The watcher: notices expiries without anyone polling, and sends the alerts.

Run it beside gunicorn (``flask --app wsgi daemons watch``); several may run on
several hosts. Each tick: note that the service is alive (granting grace after
an outage of our own), record newly expired daemons as stale, turn new events
into outbox rows, and deliver what is due — receivers in parallel, so one slow
receiver costs the others nothing.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from app.alerts import outbox, webhooks
from app.clock import Clock
from app.registry import expiry, outage_grace, service
from config import Settings

log = logging.getLogger(__name__)
SENDERS = 8


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
    enqueued: int = 0
    sent: int = 0
    delivered: int = 0


def policy(settings: Settings) -> outbox.Policy:
    return outbox.Policy(
        urls=settings.alert_webhook_urls,
        alert_types=frozenset(settings.alert_events),
        max_attempts=settings.alert_max_attempts,
    )


def tick(watcher: Watcher, senders: ThreadPoolExecutor) -> TickReport:
    """One pass of the watcher's work. Database errors propagate to the caller."""
    settings, clock = watcher.settings, watcher.clock
    ttl = expiry.ttl(settings.daemon_ttl_seconds)
    rules = policy(settings)
    report = TickReport()
    with watcher.engine.connect() as conn:
        now = clock.now()
        report.graced = outage_grace.observe(conn, now=now, ttl=ttl, create=True)
        if report.graced:
            log.warning("service was unreachable for over %s: %d daemons get grace", ttl, report.graced)
        report.stale = service.record_expiries(conn, now=now)
        report.enqueued = outbox.enqueue(conn, rules, now=now)
        due = outbox.claim(conn, now=now)
    if not due:
        return report
    # No database connection is held while waiting on receivers.
    secret, timeout = settings.alert_webhook_secret, settings.alert_timeout_seconds
    outcomes = list(
        senders.map(
            lambda d: webhooks.post(d.url, d.payload, secret=secret, timeout=timeout),
            due,
        )
    )
    for delivery, outcome in zip(due, outcomes, strict=True):
        level = logging.INFO if outcome.delivered else logging.WARNING
        log.log(level, "alert %s %s to %s: %s", delivery.payload["id"], delivery.alert_type, delivery.url, outcome.detail)
    with watcher.engine.connect() as conn:
        outbox.settle(conn, list(zip(due, outcomes, strict=True)), rules, now=clock.now())
    report.sent = len(due)
    report.delivered = sum(o.delivered for o in outcomes)
    return report


def run(watcher: Watcher, stop: threading.Event) -> None:
    """Tick every WATCH_INTERVAL_SECONDS until ``stop`` is set; survive database outages."""
    interval = watcher.settings.watch_interval_seconds
    with ThreadPoolExecutor(SENDERS, thread_name_prefix="alert-sender") as senders:
        while not stop.is_set():
            try:
                report = tick(watcher, senders)
                if report.stale:
                    log.info("stale: %s", ", ".join(report.stale))
            except DBAPIError as exc:
                log.warning("database unavailable, retrying next tick: %s", type(exc.orig).__name__)
            stop.wait(interval)
