"""No false alarms after an outage of the service itself.

Rule: once a watcher runs, the service notes when it was last seen working.
If that is more than a TTL ago when work resumes (the service or its database
was down), every daemon alive when the lapse began gets one TTL of grace from
the moment of return, whoever notices first: a heartbeat, /health or a watcher.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from app import watcher
from app.alerts.lanes import Lanes
from app.models import service_liveness, service_outages
from tests.conftest import HEADERS, heartbeat_body, registration

SECRET = "webhook-secret-0123456789"


@pytest.fixture
def alerting(app, make_app, receiver):
    return make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET)


@pytest.fixture
def fleet(alerting, clock, receiver):
    """Two daemons beating with a watcher running, then an outage of 300 s."""
    client = alerting.test_client()
    senders = Lanes()

    def tick():
        report = watcher.tick(alerting, senders)
        assert senders.wait_idle(timeout=30)
        return report

    def beat(daemon_id):
        body = heartbeat_body(daemonId=daemon_id)
        return client.post("/api/daemon/heartbeat", json=body, headers=HEADERS)

    for daemon_id in ("a", "b"):
        client.post("/api/daemon/register", json=registration(daemonId=daemon_id), headers=HEADERS)
    tick()
    clock.advance(30)
    beat("a"), beat("b")
    tick()
    clock.advance(300)  # the database is down: no tick, no request gets through
    yield client, tick, beat
    senders.close()


def test_heartbeat_first_after_outage_is_accepted(fleet, receiver):
    client, tick, beat = fleet
    assert beat("a").status_code == 200
    assert tick().stale == []
    health = client.get("/api/daemon/health", headers=HEADERS).get_json()
    assert (health["totalActive"], health["stale"]) == (2, [])
    assert receiver.received == []


def test_watcher_first_after_outage_grants_grace(fleet, receiver):
    _client, tick, beat = fleet
    report = tick()
    assert (report.graced, report.stale) == (2, [])
    assert beat("b").status_code == 200
    assert receiver.received == []


def test_health_first_after_outage_reports_nothing_stale(fleet):
    client, _tick, _beat = fleet
    health = client.get("/api/daemon/health", headers=HEADERS).get_json()
    assert (health["totalActive"], health["stale"]) == (2, [])


def test_a_daemon_that_does_not_return_goes_stale_after_one_ttl_of_grace(fleet, clock, receiver):
    _client, tick, beat = fleet
    tick()  # back at 330: grace until 390
    seen = {}
    for second in range(340, 410, 10):  # a returns and keeps beating; b never does
        clock.advance(10)
        beat("a")
        seen[second] = tick().stale
    assert seen[390] == []  # the last second of grace
    assert seen[400] == ["b"]
    assert sum(seen.values(), []) == ["b"]
    assert [(r.json["type"], r.json["daemonId"]) for r in receiver.received] == [("daemon.stale", "b")]


def test_the_outage_is_recorded(fleet, engine):
    _client, tick, _beat = fleet
    tick()
    with engine.connect() as conn:
        [outage] = conn.execute(select(service_outages)).all()
    assert (outage.ended_at - outage.started_at).total_seconds() == 300
    assert outage.daemons_graced == 2


def test_a_daemon_already_stale_before_the_outage_gets_no_grace(alerting, clock, receiver):
    client = alerting.test_client()
    with Lanes() as senders:
        client.post("/api/daemon/register", json=registration(daemonId="gone"), headers=HEADERS)
        client.post("/api/daemon/register", json=registration(daemonId="alive"), headers=HEADERS)
        for _ in range(10):  # 100 s of watching: "gone" never beats and goes stale at 60
            clock.advance(10)
            client.post("/api/daemon/heartbeat", json=heartbeat_body(daemonId="alive"), headers=HEADERS)
            watcher.tick(alerting, senders)
        clock.advance(300)
        report = watcher.tick(alerting, senders)
    assert report.graced == 1  # only "alive"
    health = client.get("/api/daemon/health", headers=HEADERS).get_json()
    assert [d["daemonId"] for d in health["activeDaemons"]] == ["alive"]
    assert [d["daemonId"] for d in health["stale"]] == ["gone"]


def test_short_pauses_grant_no_grace(alerting, clock):
    client = alerting.test_client()
    with Lanes() as senders:
        client.post("/api/daemon/register", json=registration(), headers=HEADERS)
        watcher.tick(alerting, senders)
        clock.advance(59)  # a pause shorter than the TTL is no outage
        watcher.tick(alerting, senders)
        clock.advance(2)
        report = watcher.tick(alerting, senders)
    assert (report.graced, report.stale) == (0, ["daemon_macmini_1"])
