"""Alerts that arrive and can be trusted, through a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.alerts import outbox, watcher
from app.cli import watcher_of
from app.models import alert_deliveries, daemon_events
from tests.support.alerting import SECRET
from tests.support.api import HEADERS, heartbeat_body, registration
from tests.support.watching import settled_tick, watch_for
from tests.support.uptime_fixtures import iso
from tests.support.webhook_receiver import start_receiver, verify_signature


@pytest.fixture
def alerting(app, make_app, receiver):
    """The app with webhooks on; ``app`` has emptied the tables first."""
    return make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET)


@pytest.fixture
def api(alerting):
    client = alerting.test_client()

    def call(method: str, path: str, body=None):
        return client.open(f"/api/daemon/{path}", method=method, json=body, headers=HEADERS)

    return call


@pytest.fixture
def tick(alerting, senders):
    return lambda app=None: settled_tick(app or alerting, senders)


@pytest.fixture
def watch(clock, alerting, senders):
    """Let time pass with a watcher running, ticking every 10 s; returns what it saw."""
    return lambda seconds, app=None: watch_for(seconds, app or alerting, clock, senders)


def _types(receiver):
    """Alerts received, in event order (deliveries go out in parallel)."""
    ordered = sorted(receiver.received, key=lambda r: int(r.json["id"].removeprefix("evt_")))
    return [(r.json["type"], r.json["daemonId"]) for r in ordered]


def _deliveries(engine):
    with engine.connect() as conn:
        return conn.execute(select(alert_deliveries).order_by(alert_deliveries.c.id)).all()


def test_watcher_records_expiry_and_sends_one_signed_alert(clock, api, tick, receiver, watch):
    api("POST", "register", registration())
    tick()
    assert watch(61) == ["daemon_macmini_1"]
    [alert] = receiver.received
    assert verify_signature(SECRET, alert)
    body = alert.json
    assert (body["type"], body["daemonId"]) == ("daemon.stale", "daemon_macmini_1")
    assert body["occurredAt"] == "2026-01-25T12:01:00Z"
    assert body["daemon"]["status"] == "healthy"
    assert alert.headers["x-daemonhealth-event-id"] == body["id"]
    clock.advance(5)
    tick()
    assert len(receiver.received) == 1


def test_watcher_leaves_the_stale_report_to_health(clock, api, tick, engine, watch):
    api("POST", "register", registration())
    watch(61)
    first = api("GET", "health").get_json()
    assert [d["daemonId"] for d in first["stale"]] == ["daemon_macmini_1"]
    assert api("GET", "health").get_json()["stale"] == []
    with engine.connect() as conn:
        kinds = conn.execute(select(daemon_events.c.kind).order_by(daemon_events.c.id)).scalars().all()
    assert kinds == ["registered", "stale"]  # /health did not record it a second time


def test_signature_fails_with_another_secret_or_body(clock, api, tick, receiver, watch):
    api("POST", "register", registration())
    watch(61)
    [alert] = receiver.received
    assert not verify_signature("another-secret-0123456789", alert)
    alert.body = alert.body.replace(b"healthy", b"degraded")
    assert not verify_signature(SECRET, alert)


def test_recovered_unhealthy_healthy_again_and_deregistered(clock, api, tick, receiver, watch):
    api("POST", "register", registration())
    watch(61)
    api("POST", "register", registration())  # recovered
    api("POST", "heartbeat", heartbeat_body(status="unhealthy"))
    api("POST", "heartbeat", heartbeat_body(status="degraded"))  # out of unhealthy
    api("POST", "heartbeat", heartbeat_body(status="healthy"))  # no alert: was degraded
    api("DELETE", "daemon_macmini_1")
    tick()
    assert _types(receiver) == [
        ("daemon.stale", "daemon_macmini_1"),
        ("daemon.recovered", "daemon_macmini_1"),
        ("daemon.unhealthy", "daemon_macmini_1"),
        ("daemon.healthy_again", "daemon_macmini_1"),
        ("daemon.deregistered", "daemon_macmini_1"),
    ]
    assert len({r.json["id"] for r in receiver.received}) == 5


def test_only_configured_alert_types_fire(app, make_app, clock, receiver, senders, watch):
    only_stale = make_app(
        alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET, alert_events=("daemon.stale",)
    )
    client = only_stale.test_client()
    client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    client.post("/api/daemon/heartbeat", json=heartbeat_body(status="unhealthy"), headers=HEADERS)
    watch(61, only_stale)
    assert _types(receiver) == [("daemon.stale", "daemon_macmini_1")]


def test_every_webhook_gets_each_alert(app, make_app, clock, senders, watch):
    first, second = start_receiver(), start_receiver()
    try:
        both = make_app(alert_webhook_urls=(first.url, second.url), alert_webhook_secret=SECRET)
        both.test_client().post("/api/daemon/register", json=registration(), headers=HEADERS)
        watch(61, both)
        assert _types(first) == _types(second) == [("daemon.stale", "daemon_macmini_1")]
    finally:
        for receiver in (first, second):
            receiver.stop()


def test_500s_are_retried_with_growing_backoff(clock, api, tick, receiver, engine, watch):
    receiver.answer((500, 0), (502, 0), (200, 0))
    api("POST", "register", registration())
    watch(61)
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("pending", 1, "HTTP 500")
    first_wait = delivery.next_attempt_at - clock.now()
    assert timedelta(seconds=2.5) <= first_wait <= timedelta(seconds=5)
    tick()  # not due yet: nothing sent
    assert len(receiver.received) == 1
    clock.advance(first_wait.total_seconds())
    tick()
    [delivery] = _deliveries(engine)
    second_wait = delivery.next_attempt_at - clock.now()
    assert timedelta(seconds=5) <= second_wait <= timedelta(seconds=10)
    clock.advance(second_wait.total_seconds())
    tick()
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.attempts) == ("delivered", 3)
    assert len(receiver.received) == 3
    assert len({r.json["id"] for r in receiver.received}) == 1  # the same event each time


def test_timeouts_are_retried(app, make_app, clock, receiver, senders, engine, watch):
    impatient = make_app(
        alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET, alert_timeout_seconds=1
    )
    receiver.answer((200, 2.0), (200, 0))
    impatient.test_client().post("/api/daemon/register", json=registration(), headers=HEADERS)
    watch(61, impatient)
    [delivery] = _deliveries(engine)
    assert delivery.state == "pending"
    assert "timed out" in delivery.last_error
    clock.advance(10)
    settled_tick(impatient, senders)
    assert _deliveries(engine)[0].state == "delivered"


def test_a_slow_receiver_does_not_hold_up_the_others(app, make_app, clock, senders, watch):
    slow, fast = start_receiver(), start_receiver()
    slow.answer((200, 1.5))
    try:
        both = make_app(
            alert_webhook_urls=(slow.url, fast.url), alert_webhook_secret=SECRET, alert_timeout_seconds=3
        )
        both.test_client().post("/api/daemon/register", json=registration(), headers=HEADERS)
        watch(61, both)
        # Sent side by side: the fast one was not made to wait for the slow one's answer.
        assert abs(fast.received[0].at - slow.received[0].at) < 0.5
    finally:
        for receiver in (slow, fast):
            receiver.stop()


def test_gives_up_after_max_attempts_then_operator_redelivers(app, make_app, clock, receiver, senders, engine, watch):
    stubborn = make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET, alert_max_attempts=2)
    receiver.answer((503, 0))
    stubborn.test_client().post("/api/daemon/register", json=registration(), headers=HEADERS)
    watch(61 + 3 * 60, stubborn)
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.attempts) == ("failed", 2)
    runner = stubborn.test_cli_runner()
    listing = runner.invoke(args=["daemons", "alerts", "failed"])
    assert f"{delivery.id:>6}  failed" in listing.output and "HTTP 503" in listing.output
    receiver.answer((200, 0))
    assert "queued again" in runner.invoke(args=["daemons", "alerts", "redeliver", str(delivery.id)]).output
    settled_tick(stubborn, senders)
    assert _deliveries(engine)[0].state == "delivered"
    assert "delivered" in runner.invoke(args=["daemons", "alerts", "list"]).output


def test_a_4xx_answer_is_final(clock, api, tick, receiver, engine, watch):
    receiver.answer((410, 0))
    api("POST", "register", registration())
    watch(61)
    assert [(d.state, d.attempts, d.last_error) for d in _deliveries(engine)] == [("failed", 1, "HTTP 410")]


def test_delivery_interrupted_midway_is_sent_again(clock, api, tick, receiver, engine, alerting, watch):
    api("POST", "register", registration())
    watch(50)
    clock.advance(11)
    # A watcher enqueues and leases the delivery, then dies before sending.
    with engine.connect() as conn:
        from app.registry import service

        service.record_expiries(conn, now=clock.now())
        outbox.enqueue(conn, watcher.policy(watcher_of(alerting).settings), now=clock.now())
        assert len(outbox.claim(conn, now=clock.now())) == 1
    tick()
    assert receiver.received == []  # still leased to the dead watcher
    watch(outbox.LEASE.total_seconds())
    assert _types(receiver) == [("daemon.stale", "daemon_macmini_1")]
    assert _deliveries(engine)[0].state == "delivered"


def test_events_older_than_an_hour_do_not_page(clock, api, tick, receiver, engine):
    api("POST", "register", registration())
    clock.advance(61)
    api("GET", "health")  # stale recorded by /health, but no watcher ran for hours
    clock.advance(2 * 3600)
    tick()
    assert receiver.received == []
    with engine.connect() as conn:
        pending = conn.execute(
            select(func.count()).where(daemon_events.c.alerted_at.is_(None))
        ).scalar_one()
    assert pending == 0


def test_test_alert_command_reaches_every_webhook(alerting, receiver):
    result = alerting.test_cli_runner().invoke(args=["daemons", "alerts", "test"])
    assert result.exit_code == 0, result.output
    assert f"ok   {receiver.url}: HTTP 200" in result.output
    [alert] = receiver.received
    assert alert.json["type"] == "test" and verify_signature(SECRET, alert)


def test_test_alert_command_reports_a_failing_webhook(alerting, receiver):
    receiver.answer((500, 0))
    result = alerting.test_cli_runner().invoke(args=["daemons", "alerts", "test"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "HTTP 500" in result.output


def test_a_slow_receiver_does_not_delay_the_others_later_alerts(app, make_app, clock):
    """The real watcher loop; one receiver answers only after 3 s, each time.

    Each new alert must reach the fast receiver within about a tick, not after
    the slow receiver finished with the alerts before it.
    """
    slow, fast = start_receiver(), start_receiver()
    slow.answer((200, 3.0))
    both = make_app(
        alert_webhook_urls=(slow.url, fast.url),
        alert_webhook_secret=SECRET,
        alert_timeout_seconds=5,
        watch_interval_seconds=1,
    )
    client = both.test_client()
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(watcher_of(both), stop))
    loop.start()
    delays = []
    try:
        for n in range(3):
            client.post("/api/daemon/register", json=registration(daemonId=f"d{n}"), headers=HEADERS)
            happened = time.monotonic()
            client.delete(f"/api/daemon/d{n}", headers=HEADERS)  # a daemon.deregistered alert
            deadline = happened + 15
            while len(fast.received) <= n and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(fast.received) == n + 1
            delays.append(fast.received[n].at - happened)
    finally:
        stop.set()
        loop.join(timeout=30)
        for receiver in (slow, fast):
            receiver.stop()
    print(f"fast receiver's delays behind a 3 s receiver: {', '.join(f'{d:.2f}' for d in delays)} s")
    # A tick is 1 s; waiting for the slow answer would cost about 3 s more.
    assert max(delays) < 2.0
    assert [r.json["daemonId"] for r in slow.received] == ["d0", "d1", "d2"]


def test_failed_alerts_show_when_they_failed(clock, api, receiver, engine, alerting, watch):
    receiver.answer((410, 0))
    api("POST", "register", registration())
    watch(61)  # ticks at 10, 20, ... 60 and 61: the stale alert is sent, and refused, at 61 s
    listing = alerting.test_cli_runner().invoke(args=["daemons", "alerts", "failed"]).output
    assert "2026-01-25T12:01:01Z" in listing, listing
    assert (clock.now() - _deliveries(engine)[0].failed_at).total_seconds() == 0



@pytest.fixture
def maintenance(alerting):
    """Open a maintenance window from now (the clock's START) until ``until`` seconds later."""
    client = alerting.test_client()

    def open_window(until: float, **selector) -> int:
        body = {"from": iso(0), "to": iso(until), "reason": "deploy", **selector}
        response = client.post("/api/maintenance", json=body, headers=HEADERS)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    return open_window


def test_no_alert_inside_a_window_but_the_event_is_recorded_and_marked(
    alerting, api, tick, receiver, engine, watch, maintenance
):
    window = maintenance(600, daemonIds=["daemon_macmini_1"])
    api("POST", "register", registration())
    api("POST", "register", registration(daemonId="other"))
    watch(61)
    assert _types(receiver) == [("daemon.stale", "other")]
    deliveries = {d.payload["daemonId"]: d for d in _deliveries(engine)}
    covered = deliveries["daemon_macmini_1"]
    assert (covered.state, covered.maintenance_window_id, covered.attempts) == ("suppressed", window, 0)
    assert covered.payload["type"] == "daemon.stale"
    assert deliveries["other"].state == "delivered"
    with engine.connect() as conn:
        kinds = conn.execute(
            select(daemon_events.c.kind).where(daemon_events.c.daemon_id == "daemon_macmini_1")
        ).scalars().all()
    assert kinds == ["registered", "stale"]  # recorded all the same
    watch(60)
    assert _types(receiver) == [("daemon.stale", "other")]  # and never sent later
    listed = alerting.test_cli_runner().invoke(args=["daemons", "alerts", "list"]).stdout
    assert "suppressed" in listed


def test_capability_window_silences_only_its_daemons_and_only_while_it_runs(
    clock, api, receiver, watch, maintenance
):
    maintenance(300, capability="cron")
    api("POST", "register", registration(daemonId="cron_worker", capabilities=["cron"]))
    api("POST", "register", registration(daemonId="queue_worker", capabilities=["queue"]))
    watch(61)  # both stale at 60, inside the window
    api("POST", "register", registration(daemonId="cron_worker", capabilities=["cron"]))  # recovered at 61
    watch(290)  # stale again at 121, still inside; the window ends at 300
    assert _types(receiver) == [("daemon.stale", "queue_worker")]
    api("POST", "register", registration(daemonId="cron_worker", capabilities=["cron"]))  # after it
    watch(61)
    assert _types(receiver) == [
        ("daemon.stale", "queue_worker"),
        ("daemon.recovered", "cron_worker"),
        ("daemon.stale", "cron_worker"),
    ]


@pytest.mark.parametrize(("window_end", "covered"), [(60, False), (61, True)])
def test_alerts_and_uptime_agree_on_what_a_window_covers(
    alerting, api, receiver, watch, maintenance, window_end, covered
):
    # The daemon's TTL runs out at 60: a window ending then covers nothing of it, one
    # ending a second later covers that second (app/maintenance/coverage.py for alerts,
    # the daemon_timeline view for uptime).
    maintenance(window_end)
    api("POST", "register", registration())
    watch(120)
    assert _types(receiver) == ([] if covered else [("daemon.stale", "daemon_macmini_1")])
    report = api("GET", "daemon_macmini_1/uptime?from=" + iso(0) + "&to=" + iso(120)).get_json()
    assert (report["plannedDownSeconds"], report["downSeconds"]) == ((1, 59) if covered else (0, 60))
    assert report["incidents"] == 1


def test_a_region_window_silences_only_that_regions_daemons(api, receiver, watch, maintenance):
    maintenance(600, region="eu-west")
    api("POST", "register", registration(daemonId="eu_worker", region="eu-west"))
    api("POST", "register", registration(daemonId="us_worker", region="us-east"))
    watch(61)
    assert _types(receiver) == [("daemon.stale", "us_worker")]
