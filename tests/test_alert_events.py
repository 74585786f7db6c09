"""Alerts that are not status transitions (alert_events) go through the same outbox, and
open alerts are raised and recovered once however many watchers race.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, insert, select

from app.alerts import alert_events, open_alerts
from app.models import alert_deliveries, daemon_events
from app.models import alert_events as alert_events_table
from tests.support.alerting import SECRET, settled_tick
from tests.support.api import HEADERS, registration
from tests.support.webhook_receiver import verify_signature


@pytest.fixture
def alerting(app, make_app, receiver):
    return make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET)


def _record(engine, alert_type="daemon.error_rate_high", subject="daemon_macmini_1", *, now, **payload):
    with engine.begin() as conn:
        return alert_events.record(conn, alert_type, subject, {"daemonId": subject, **payload}, now=now)


def test_an_alert_event_is_delivered_signed_with_its_figures(alerting, engine, clock, receiver, senders):
    event_id = _record(engine, now=clock.now(), errorRate=0.5, tasks=40)
    clock.advance(1)
    settled_tick(alerting, senders)
    [alert] = receiver.received
    assert verify_signature(SECRET, alert)
    assert alert.json == {
        "id": f"alert_{event_id}",
        "type": "daemon.error_rate_high",
        "daemonId": "daemon_macmini_1",
        "occurredAt": "2026-01-25T12:00:00Z",
        "recordedAt": "2026-01-25T12:00:00Z",
        "errorRate": 0.5,
        "tasks": 40,
    }
    assert alert.headers["x-daemonhealth-event-id"] == f"alert_{event_id}"
    clock.advance(10)
    settled_tick(alerting, senders)
    assert len(receiver.received) == 1


def test_an_alert_event_and_a_history_event_with_the_same_id_are_both_delivered(
    alerting, engine, clock, receiver, senders
):
    alerting.test_client().post("/api/daemon/register", json=registration(), headers=HEADERS)
    alerting.test_client().delete("/api/daemon/daemon_macmini_1", headers=HEADERS)  # daemon.deregistered
    with engine.begin() as conn:
        last = conn.execute(select(func.max(daemon_events.c.id))).scalar_one()
        conn.execute(
            insert(alert_events_table).values(
                id=last, alert_type="daemon.error_rate_high", subject="daemon_macmini_1",
                occurred_at=clock.now(), recorded_at=clock.now(), payload={"daemonId": "daemon_macmini_1"},
            )
        )
    settled_tick(alerting, senders)
    assert sorted(r.json["id"] for r in receiver.received) == sorted([f"evt_{last}", f"alert_{last}"])
    with engine.connect() as conn:
        sources = conn.execute(select(alert_deliveries.c.source, alert_deliveries.c.event_id)).all()
    assert sorted(sources) == [("alert_events", last), ("daemon_events", last)]


def test_alert_events_follow_alert_events_setting(make_app, app, engine, clock, receiver, senders):
    only_stale = make_app(
        alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET, alert_events=("daemon.stale",)
    )
    _record(engine, now=clock.now())
    settled_tick(only_stale, senders)
    assert receiver.received == []
    with engine.connect() as conn:
        assert conn.execute(select(alert_events_table.c.alerted_at)).scalar_one() == clock.now()


def test_alert_events_older_than_an_hour_do_not_page(alerting, engine, clock, receiver, senders):
    _record(engine, now=clock.now())
    clock.advance(2 * 3600)
    settled_tick(alerting, senders)
    assert receiver.received == []


def test_an_open_alert_is_raised_and_recovered_once(engine, clock):
    raise_ = lambda conn: open_alerts.raise_once(conn, "daemon.error_rate_high", "d1", {"daemonId": "d1"}, now=clock.now())  # noqa: E731
    recover = lambda conn: open_alerts.recover_once(  # noqa: E731
        conn, "daemon.error_rate_high", "d1", "daemon.error_rate_ok", {"daemonId": "d1"}, now=clock.now()
    )
    with engine.begin() as conn:
        assert [raise_(conn), raise_(conn)] == [True, False]
        assert open_alerts.subjects(conn, "daemon.error_rate_high") == {"d1"}
        assert [recover(conn), recover(conn)] == [True, False]
        assert open_alerts.subjects(conn, "daemon.error_rate_high") == set()
        assert raise_(conn) is True  # wrong again: a new alert
        types = conn.execute(
            select(alert_events_table.c.alert_type).order_by(alert_events_table.c.id)
        ).scalars().all()
    assert types == ["daemon.error_rate_high", "daemon.error_rate_ok", "daemon.error_rate_high"]


@pytest.mark.parametrize("change", ["raise", "recover"])
def test_racing_transactions_raise_and_recover_an_open_alert_once(pg_engine, clock, change):
    """The second transaction waits on the first one's row and then changes nothing."""
    if change == "recover":
        with pg_engine.begin() as conn:
            open_alerts.raise_once(conn, "region.disrupted", "eu", {}, now=clock.now())

    def act(conn) -> bool:
        if change == "raise":
            return open_alerts.raise_once(conn, "region.disrupted", "eu", {}, now=clock.now())
        return open_alerts.recover_once(conn, "region.disrupted", "eu", "region.restored", {}, now=clock.now())

    first_acted, first_done = threading.Event(), threading.Event()

    def first():
        with pg_engine.begin() as conn:
            result = act(conn)
            first_acted.set()
            # Hold the row uncommitted a moment: the second statement must wait for the commit.
            threading.Event().wait(0.3)
            first_done.set()
            return result

    def second():
        first_acted.wait(timeout=10)
        with pg_engine.begin() as conn:
            return act(conn), first_done.is_set()

    with ThreadPoolExecutor(2) as pool:
        won = pool.submit(first)
        lost = pool.submit(second)
        assert won.result(timeout=30) is True
        result, waited = lost.result(timeout=30)
    assert result is False and waited
    with pg_engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(alert_events_table)).scalar_one()
    assert events == (1 if change == "raise" else 2)
