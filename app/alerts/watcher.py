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
from datetime import timedelta

from flask import Flask
from sqlalchemy.exc import DBAPIError

from app.registry import outage_grace
from app.alerts import outbox, webhooks
from app.clock import CLOCK_KEY, Clock
from app.registry import service
from app.store.engine import database

log = logging.getLogger(__name__)
SENDERS = 8


@dataclass
class TickReport:
    graced: int = 0
    stale: list[str] = field(default_factory=list)
    enqueued: int = 0
    sent: int = 0
    delivered: int = 0


def policy(app: Flask) -> outbox.Policy:
    return outbox.Policy(
        urls=app.config["ALERT_WEBHOOK_URLS"],
        alert_types=frozenset(app.config["ALERT_EVENTS"]),
        max_attempts=app.config["ALERT_MAX_ATTEMPTS"],
    )


def tick(app: Flask, senders: ThreadPoolExecutor) -> TickReport:
    """One pass of the watcher's work. Database errors propagate to the caller."""
    clock: Clock = app.extensions[CLOCK_KEY]
    ttl = timedelta(seconds=app.config["DAEMON_TTL_SECONDS"])
    rules = policy(app)
    report = TickReport()
    engine = database(app).engine
    with engine.connect() as conn:
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
    secret, timeout = app.config["ALERT_WEBHOOK_SECRET"], app.config["ALERT_TIMEOUT_SECONDS"]
    outcomes = list(
        senders.map(
            lambda d: webhooks.post(d.url, d.payload, secret=secret, timeout=timeout),
            due,
        )
    )
    for delivery, outcome in zip(due, outcomes, strict=True):
        level = logging.INFO if outcome.delivered else logging.WARNING
        log.log(level, "alert %s %s to %s: %s", delivery.payload["id"], delivery.alert_type, delivery.url, outcome.detail)
    with engine.connect() as conn:
        outbox.settle(conn, list(zip(due, outcomes, strict=True)), rules, now=clock.now())
    report.sent = len(due)
    report.delivered = sum(o.delivered for o in outcomes)
    return report


def run(app: Flask, stop: threading.Event) -> None:
    """Tick every WATCH_INTERVAL_SECONDS until ``stop`` is set; survive database outages."""
    interval = app.config["WATCH_INTERVAL_SECONDS"]
    with ThreadPoolExecutor(SENDERS, thread_name_prefix="alert-sender") as senders:
        while not stop.is_set():
            try:
                report = tick(app, senders)
                if report.stale:
                    log.info("stale: %s", ", ".join(report.stale))
            except DBAPIError as exc:
                log.warning("database unavailable, retrying next tick: %s", type(exc.orig).__name__)
            stop.wait(interval)
