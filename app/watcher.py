"""The watcher: notices expiries without anyone polling, and sends the alerts.

Run it beside gunicorn (``flask --app wsgi daemons watch``); several may run on
several hosts. Each tick: note that the service is alive (granting grace after
an outage of our own), record newly expired daemons as stale, turn new events
into outbox rows, and hand what is due to the receivers' lanes without waiting
for answers — each receiver has its own lane, so one slow receiver costs the
others nothing, this tick or the next.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import Engine, Row
from sqlalchemy.exc import DBAPIError

from app import liveness
from app.alerts import outbox, webhooks
from app.alerts.lanes import Lanes
from app.clock import CLOCK_KEY, Clock
from app.daemons import service
from app.db import database

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    graced: int = 0
    stale: list[str] = field(default_factory=list)
    enqueued: int = 0
    sent: int = 0


def policy(app: Flask) -> outbox.Policy:
    return outbox.Policy(
        urls=app.config["ALERT_WEBHOOK_URLS"],
        alert_types=frozenset(app.config["ALERT_EVENTS"]),
        max_attempts=app.config["ALERT_MAX_ATTEMPTS"],
    )


def tick(app: Flask, lanes: Lanes) -> TickReport:
    """One pass of the watcher's work. Database errors propagate to the caller.

    Due deliveries are handed to ``lanes`` and settled there as their answers
    arrive; the tick does not wait for them.
    """
    clock: Clock = app.extensions[CLOCK_KEY]
    ttl = timedelta(seconds=app.config["DAEMON_TTL_SECONDS"])
    rules = policy(app)
    report = TickReport()
    engine = database(app).engine
    with engine.connect() as conn:
        now = clock.now()
        report.graced = liveness.observe(conn, now=now, ttl=ttl, create=True)
        if report.graced:
            log.warning("service was unreachable for over %s: %d daemons get grace", ttl, report.graced)
        report.stale = service.record_expiries(conn, now=now)
        report.enqueued = outbox.enqueue(conn, rules, now=now)
        due: list[Row[Any]] = []
        for url in outbox.due_urls(conn, now=now):
            # A lane still busy with a slow receiver takes no more than it has room for.
            if room := lanes.room(url):
                due += outbox.claim(conn, now=now, limit=room, url=url)
    # No database connection is held while waiting on receivers.
    secret, timeout = app.config["ALERT_WEBHOOK_SECRET"], app.config["ALERT_TIMEOUT_SECONDS"]
    for delivery in due:
        lanes.send(
            delivery.url,
            lambda d=delivery: _deliver(d, engine, clock, rules, secret=secret, timeout=timeout),
        )
    report.sent = len(due)
    return report


def _deliver(
    delivery: Row[Any], engine: Engine, clock: Clock, rules: outbox.Policy, *, secret: str, timeout: float
) -> None:
    """Send one claimed delivery and record its outcome at once."""
    outcome = webhooks.post(delivery.url, delivery.payload, secret=secret, timeout=timeout)
    level = logging.INFO if outcome.delivered else logging.WARNING
    log.log(level, "alert %s %s to %s: %s", delivery.payload["id"], delivery.alert_type, delivery.url, outcome.detail)
    try:
        with engine.connect() as conn:
            outbox.settle(conn, [(delivery, outcome)], rules, now=clock.now())
    except DBAPIError as exc:
        # Unrecorded, the delivery is sent again when its lease runs out: at least once.
        log.warning("could not record alert %s: %s", delivery.payload["id"], type(exc.orig).__name__)


def run(app: Flask, stop: threading.Event) -> None:
    """Tick every WATCH_INTERVAL_SECONDS until ``stop`` is set; survive database outages.

    On the way out, deliveries in flight are finished and the watcher signs off,
    so the time until a watcher runs again is not taken for an outage.
    """
    interval = app.config["WATCH_INTERVAL_SECONDS"]
    with Lanes() as lanes:
        while not stop.is_set():
            try:
                report = tick(app, lanes)
                if report.stale:
                    log.info("stale: %s", ", ".join(report.stale))
            except DBAPIError as exc:
                log.warning("database unavailable, retrying next tick: %s", type(exc.orig).__name__)
            stop.wait(interval)
    try:
        with database(app).engine.connect() as conn:
            liveness.sign_off(conn)
    except DBAPIError as exc:
        log.warning("could not sign off (the next watcher may grant grace): %s", type(exc.orig).__name__)
