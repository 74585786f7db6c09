"""Region outages: one alert when most of a region falls silent, per-daemon alerts otherwise.

The clock is moved, never slept on: a watcher ticks every 5 s of it, while the
daemons that stay up heartbeat at each tick.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app import create_app
from app.alerts import watcher as watchers
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from app.http.context import database
from app.models import alert_deliveries, alert_events, daemon_events
from config import Settings
from tests.support.alerting import SECRET
from tests.support.watching import settled_tick
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration
from tests.support.app_fixtures import wipe_tables
from tests.support.clocks import START
from tests.support.webhook_receiver import start_receiver

TICK = 5  # seconds of the moved clock between watcher ticks
TTL = 60


class Fleet:
    """Daemons driven through the API while a watcher ticks on the moved clock."""

    def __init__(self, apps, clock, lanes):
        self.apps, self.clock, self.lanes = apps, clock, lanes
        self.client = apps[0].test_client()
        self.beating: set[str] = set()

    def register(self, daemon_id: str, region: str | None = "eu-west") -> None:
        response = self.client.post("/api/daemon/register",
                                    json=registration(daemonId=daemon_id, region=region), headers=HEADERS)
        assert response.status_code == 201, response.get_json()
        self.beating.add(daemon_id)

    def silence(self, *daemon_ids: str) -> None:
        self.beating -= set(daemon_ids)

    def run(self, seconds: float) -> None:
        """Let ``seconds`` pass: every TICK, the beating daemons heartbeat and the watchers tick."""
        for _ in range(int(seconds // TICK)):
            self.clock.advance(TICK)
            for daemon_id in sorted(self.beating):
                response = self.client.post("/api/daemon/heartbeat",
                                            json=heartbeat_body(daemonId=daemon_id), headers=HEADERS)
                assert response.status_code == 200, (daemon_id, response.get_json())
            self.tick()

    def tick(self) -> None:
        if len(self.apps) == 1:
            settled_tick(self.apps[0], self.lanes[0])
            return
        barrier = threading.Barrier(len(self.apps))

        def tick(app, lanes):
            barrier.wait()
            return watchers.tick(watcher_of(app), lanes)

        with ThreadPoolExecutor(len(self.apps)) as pool:
            list(pool.map(tick, self.apps, self.lanes))
        assert all(lanes.wait_idle(timeout=60) for lanes in self.lanes)

    def regions(self) -> dict:
        response = self.client.get("/api/regions", headers=HEADERS)
        return {entry["region"]: entry for entry in response.get_json()}


@pytest.fixture
def fleet(make_app, app, clock, receiver):
    """One watcher with webhooks on (``app`` has emptied the tables first)."""
    alerting = make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET)
    with Lanes() as lanes:
        yield Fleet([alerting], clock, [lanes])


def _alerts(receiver) -> list[tuple[str, str]]:
    """(type, subject) of each alert received, in the order they were received."""
    return [(r.json["type"], r.json.get("region") or r.json["daemonId"]) for r in receiver.received]


def _region_alert(receiver, kind):
    [alert] = [r.json for r in receiver.received if r.json["type"] == kind]
    return alert


def _stale_events(engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(
            select(daemon_events.c.daemon_id).where(daemon_events.c.kind == "stale")).scalars())


def _staggered_outage(fleet: Fleet) -> None:
    """Five daemons in eu-west; four of them fall silent one after another, 10 s apart."""
    for n in range(1, 6):
        fleet.register(f"w{n}")
    fleet.register("u1", region="us-east")
    for n in range(1, 5):
        fleet.silence(f"w{n}")
        fleet.run(10)


def test_a_region_falling_silent_sends_one_alert_naming_it(fleet, receiver, engine):
    _staggered_outage(fleet)
    fleet.run(3 * TTL)
    assert _alerts(receiver) == [("region.disrupted", "eu-west")]
    alert = _region_alert(receiver, "region.disrupted")
    # w1, w2 and w3 made it more than half of five; w4 joined it after.
    assert alert["daemons"] == ["w1", "w2", "w3"]
    assert (alert["silent"], alert["active"]) == (3, 2)
    assert alert["id"].startswith("alert_")
    # The third silence took effect at 20 s + TTL; the next tick saw it.
    assert alert["occurredAt"] == "2026-01-25T12:01:25Z"
    # Per-daemon history stays exact, and /health still reports each one stale.
    assert _stale_events(engine) == ["w1", "w2", "w3", "w4"]
    assert fleet.regions()["eu-west"]["disrupted"] is True
    assert fleet.regions()["us-east"]["disrupted"] is False
    health = fleet.client.get("/api/daemon/health", headers=HEADERS).get_json()
    assert sorted(d["daemonId"] for d in health["stale"]) == ["w1", "w2", "w3", "w4"]
    assert fleet.regions()["eu-west"]["disrupted"] is True  # reaping does not end it


def test_a_single_silent_daemon_alerts_on_its_own_after_one_ttl(fleet, receiver, clock):
    for n in range(1, 6):
        fleet.register(f"w{n}")
    fleet.register("alone", region=None)
    fleet.silence("w1", "alone")
    fleet.run(TTL + TICK)
    # Expired at 60 s: the daemon without a region alerts at once, w1 is held.
    assert _alerts(receiver) == [("daemon.stale", "alone")]
    fleet.run(TTL - 2 * TICK)  # to 115 s
    assert _alerts(receiver) == [("daemon.stale", "alone")]
    fleet.run(TICK)
    # At 120 s, one TTL after w1 went stale, no outage came of it: its own alert.
    assert _alerts(receiver) == [("daemon.stale", "alone"), ("daemon.stale", "w1")]
    assert receiver.received[1].json["occurredAt"] == "2026-01-25T12:01:00Z"
    assert fleet.regions()["eu-west"]["disrupted"] is False


def test_a_region_too_small_to_be_disrupted_alerts_at_once(fleet, receiver):
    fleet.register("s1", region="tiny")
    fleet.register("s2", region="tiny")
    fleet.silence("s1", "s2")
    fleet.run(TTL + TICK)
    assert sorted(_alerts(receiver)) == [("daemon.stale", "s1"), ("daemon.stale", "s2")]


def test_half_of_a_region_is_not_a_disruption(fleet, receiver):
    for n in range(1, 7):
        fleet.register(f"w{n}")
    fleet.silence("w1", "w2", "w3")  # three of six: not more than half
    fleet.run(2 * TTL + TICK)
    assert sorted(_alerts(receiver)) == [("daemon.stale", f"w{n}") for n in (1, 2, 3)]


def test_the_region_recovers_when_its_daemons_return(fleet, receiver):
    _staggered_outage(fleet)
    fleet.run(TTL)
    for n in (1, 2, 3):
        fleet.register(f"w{n}")  # back; w4 stays away
    fleet.run(TICK)
    assert _alerts(receiver) == [("region.disrupted", "eu-west"), ("region.recovered", "eu-west")]
    recovered = _region_alert(receiver, "region.recovered")
    assert (recovered["daemons"], recovered["stillSilent"]) == (["w1", "w2", "w3"], ["w4"])
    assert fleet.regions()["eu-west"]["disrupted"] is False
    # w4's return after the recovery is its own.
    fleet.register("w4")
    fleet.run(TICK)
    assert _alerts(receiver)[2:] == [("daemon.recovered", "w4")]


def test_the_region_stays_disrupted_while_most_are_down(fleet, receiver):
    _staggered_outage(fleet)
    fleet.run(TTL)
    fleet.register("w1")  # 3 of 5 still down
    fleet.run(2 * TTL)
    assert _alerts(receiver) == [("region.disrupted", "eu-west")]
    assert fleet.regions()["eu-west"]["disrupted"] is True


def test_without_region_alerts_daemons_alert_one_by_one(make_app, app, clock, receiver):
    alerting = make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET,
                        alert_events=("daemon.stale",))
    with Lanes() as lanes:
        fleet = Fleet([alerting], clock, [lanes])
        for n in range(1, 5):
            fleet.register(f"w{n}")
        fleet.silence("w1", "w2", "w3", "w4")
        fleet.run(TTL + TICK)
    assert sorted(_alerts(receiver)) == [("daemon.stale", f"w{n}") for n in range(1, 5)]


def test_two_watchers_alert_a_disruption_and_its_recovery_once(postgres_database, clock):
    """Two watchers (own apps, own engines, own threads) tick at the same moments on Postgres."""
    receiver = start_receiver()
    settings = Settings(database_url=postgres_database, admin_api_keys=(API_KEY,),
                        alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET)
    clock.current = START
    apps = [create_app(settings, clock=clock) for _ in range(2)]
    wipe_tables(database(apps[0]).engine)
    try:
        with Lanes() as first, Lanes() as second:
            fleet = Fleet(apps, clock, [first, second])
            for n in range(1, 9):
                fleet.register(f"w{n}")
            fleet.silence(*(f"w{n}" for n in range(1, 7)))  # six of eight
            fleet.run(2 * TTL)
            for n in range(1, 7):
                fleet.register(f"w{n}")
            fleet.run(2 * TICK)
        assert _alerts(receiver) == [("region.disrupted", "eu-west"), ("region.recovered", "eu-west")]
        assert _region_alert(receiver, "region.disrupted")["daemons"] == [f"w{n}" for n in range(1, 7)]
        assert _stale_events(database(apps[0]).engine) == [f"w{n}" for n in range(1, 7)]
    finally:
        receiver.stop()
        for app in apps:
            database(app).dispose()


def test_retiring_the_silent_daemons_ends_the_disruption(fleet, receiver):
    _staggered_outage(fleet)
    fleet.run(TTL)
    for n in range(1, 5):  # the region is gone for good: an admin retires its daemons
        fleet.register(f"w{n}")
        assert fleet.client.delete(f"/api/daemon/w{n}", headers=HEADERS).status_code == 200
        fleet.silence(f"w{n}")
    fleet.run(TICK)
    recovered = _region_alert(receiver, "region.recovered")
    assert (recovered["daemons"], recovered["stillSilent"]) == (["w1", "w2", "w3"], [])
    assert fleet.regions()["eu-west"]["disrupted"] is False


def test_with_a_long_ttl_a_stale_alert_is_held_ten_minutes_at_most(make_app, app, clock, receiver):
    alerting = make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET,
                        daemon_ttl_seconds=7200)
    with Lanes() as lanes:
        fleet = Fleet([alerting], clock, [lanes])
        for n in range(1, 6):
            fleet.register(f"w{n}")
        fleet.silence("w1")
        clock.advance(7000 - TICK)
        fleet.run(TICK)  # the others' one heartbeat, good for two more hours
        fleet.beating.clear()
        clock.advance(200)
        fleet.run(TICK)  # 7205 s: w1 went stale at 7200 s
        fleet.run(600 - 2 * TICK)  # 7795 s
        assert _alerts(receiver) == []
        fleet.run(TICK)  # 7800 s: ten minutes after it went stale
    assert _alerts(receiver) == [("daemon.stale", "w1")]


def test_a_region_drained_inside_its_maintenance_window_pages_nobody(fleet, receiver, engine):
    window = {"from": START.isoformat(), "to": (START + timedelta(hours=1)).isoformat(),
              "reason": "draining eu-west", "region": "eu-west"}
    assert fleet.client.post("/api/maintenance", json=window, headers=HEADERS).status_code == 201
    _staggered_outage(fleet)
    fleet.run(3 * TTL)
    assert receiver.received == []  # neither the region's alert nor its daemons' own
    with engine.connect() as conn:
        kinds = conn.execute(select(alert_events.c.alert_type)).scalars().all()
        states = set(conn.execute(select(alert_deliveries.c.state)).scalars())
    assert kinds == ["region.disrupted"] and states == {"suppressed"}  # recorded all the same
