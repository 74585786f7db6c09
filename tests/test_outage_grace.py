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

from app.alerts import watcher
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from app.models import service_liveness, service_outages
from tests.support.api import HEADERS, heartbeat_body, registration

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
        report = watcher.tick(watcher_of(alerting), senders)
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
            watcher.tick(watcher_of(alerting), senders)
        clock.advance(300)
        report = watcher.tick(watcher_of(alerting), senders)
    assert report.graced == 1  # only "alive"
    health = client.get("/api/daemon/health", headers=HEADERS).get_json()
    assert [d["daemonId"] for d in health["activeDaemons"]] == ["alive"]
    assert [d["daemonId"] for d in health["stale"]] == ["gone"]


def test_short_pauses_grant_no_grace(alerting, clock):
    client = alerting.test_client()
    with Lanes() as senders:
        client.post("/api/daemon/register", json=registration(), headers=HEADERS)
        watcher.tick(watcher_of(alerting), senders)
        clock.advance(59)  # a pause shorter than the TTL is no outage
        watcher.tick(watcher_of(alerting), senders)
        clock.advance(2)
        report = watcher.tick(watcher_of(alerting), senders)
    assert (report.graced, report.stale) == (0, ["daemon_macmini_1"])


def test_stopping_only_the_watcher_is_no_outage_and_grants_no_grace(alerting, clock, engine, receiver):
    """The real watcher loop runs, then is stopped (a deploy); the API stays up.

    The fleet's one daemon beats once more and dies. Nobody writes the
    liveness note meanwhile — no watcher, no traffic — so its age says nothing
    about the service. The next watcher must report the death at once, not
    record an outage and hold the alert back by a TTL of grace.
    """
    client = alerting.test_client()
    client.post("/api/daemon/register", json=registration(daemonId="a"), headers=HEADERS)
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(watcher_of(alerting), stop))
    loop.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not _liveness_noted(engine):
        time.sleep(0.05)
    assert _liveness_noted(engine)
    stop.set()
    loop.join(timeout=30)
    clock.advance(30)
    assert client.post(
        "/api/daemon/heartbeat", json=heartbeat_body(daemonId="a"), headers=HEADERS
    ).status_code == 200  # its last beat
    clock.advance(300)  # "a" died at 90 s; the watcher is started again at 330 s
    with Lanes() as lanes:
        report = watcher.tick(watcher_of(alerting), lanes)
        assert lanes.wait_idle(timeout=30)
    assert (report.graced, report.stale) == (0, ["a"])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(service_outages)).scalar_one() == 0
    assert [(r.json["type"], r.json["daemonId"]) for r in receiver.received] == [("daemon.stale", "a")]


def _liveness_noted(engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(service_liveness)).scalar_one() == 1
