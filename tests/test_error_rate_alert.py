"""The error-rate alert: raised once when a daemon's failures over the window pass the
threshold, closed once when they fall back, off by default; on both backends with a moved
clock, delivered to a real receiver, and exactly once across two racing watchers (Postgres).
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app import create_app
from app.alerts import error_rate
from app.alerts import watcher as watchers
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from app.http.context import database
from app.models import alert_deliveries, alert_events, open_alerts
from config import Settings
from tests.support.alerting import SECRET
from tests.support.watching import settled_tick
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration
from tests.support.webhook_receiver import verify_signature

DAEMON = "daemon_macmini_1"
ON = {"alert_error_rate_threshold": 0.1, "alert_error_rate_min_tasks": 20}


@pytest.fixture
def watched(make_app, app, receiver, senders):
    """A watcher (with webhooks to ``receiver``) whose settings a test chooses; tick() runs one tick."""

    class Watched:
        app = make_app(alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET, **ON)

        def configure(self, **overrides):
            self.app = make_app(
                alert_webhook_urls=(receiver.url,), alert_webhook_secret=SECRET, **{**ON, **overrides}
            )

        def tick(self):
            return settled_tick(self.app, senders).error_rate_alerts

    return Watched()


@pytest.fixture
def work(client, make_daemon):
    """A daemon that finishes ``tasks`` tasks, ``failed`` of them failing, and heartbeats the totals."""
    totals: dict[str, Counter] = {}

    def run(tasks: int = 0, failed: int = 0, daemon_id: str = DAEMON):
        if daemon_id not in totals:
            make_daemon(daemonId=daemon_id)
            totals[daemon_id] = Counter()
        total = totals[daemon_id]
        total.update(tasks=tasks, failed=failed)
        body = heartbeat_body(
            daemonId=daemon_id,
            tasksProcessed=total["tasks"],
            tasksFailed=total["failed"],
            taskTimeMs=total["tasks"] * 10,
        )
        response = client.post("/api/daemon/heartbeat", json=body, headers=HEADERS)
        assert response.status_code == 200, response.get_json()

    return run


@pytest.fixture
def elapse(clock, work, watched):
    """Let ``seconds`` pass: the daemons heartbeat (no new tasks) and the watcher ticks every 30 s."""

    def run(seconds: int, daemons=(DAEMON,)) -> error_rate.Changes:
        seen = error_rate.Changes()
        for _ in range(seconds // 30):
            clock.advance(30)
            for daemon_id in daemons:
                work(daemon_id=daemon_id)
            changes = watched.tick()
            seen.raised += changes.raised
            seen.recovered += changes.recovered
        return seen

    return run


def _alerts(engine):
    with engine.connect() as conn:
        return conn.execute(
            select(alert_events.c.alert_type, alert_events.c.subject, alert_events.c.payload).order_by(
                alert_events.c.id
            )
        ).all()


def test_fires_once_past_the_threshold_and_is_delivered(clock, work, watched, elapse, receiver, engine):
    work(40, 4)  # 10 %: the threshold itself counts
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]
    work(40, 30)  # worse still: the alert is already raised
    assert elapse(120).raised == []
    [alert] = receiver.received
    assert verify_signature(SECRET, alert)
    body = alert.json
    assert body == {
        "id": body["id"],
        "type": "daemon.error_rate_high",
        "daemonId": DAEMON,
        "occurredAt": "2026-01-25T12:00:01Z",
        "recordedAt": "2026-01-25T12:00:01Z",
        "errorRate": 0.1,
        "tasks": 40,
        "failedTasks": 4,
        "window": "15m",
        "threshold": 0.1,
        "recoveryThreshold": 0.08,
    }
    assert body["id"].startswith("alert_")
    with engine.connect() as conn:
        assert conn.execute(select(open_alerts.c.subject)).scalars().all() == [DAEMON]


def test_below_the_threshold_nothing_fires(clock, work, watched, engine):
    work(100, 9)
    clock.advance(1)
    assert watched.tick().raised == []
    assert _alerts(engine) == []


def test_too_few_tasks_do_not_page_however_many_failed(clock, work, watched, engine):
    work(1, 1)
    clock.advance(1)
    watched.tick()
    work(18, 18)  # 19 tasks, all failed: one short of ALERT_ERROR_RATE_MIN_TASKS
    clock.advance(1)
    assert watched.tick().raised == []
    work(1, 0)  # the 20th task: 19 / 20 failed
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]
    assert [(a.alert_type, a.payload["tasks"], a.payload["failedTasks"]) for a in _alerts(engine)] == [
        ("daemon.error_rate_high", 20, 19)
    ]


def test_off_by_default(clock, work, watched, elapse, receiver, engine):
    watched.configure(alert_error_rate_threshold=None)
    work(100, 100)
    assert elapse(120).raised == []
    assert _alerts(engine) == [] and receiver.received == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(open_alerts)).scalar_one() == 0


def test_recovers_once_below_the_recovery_level_without_flapping(clock, work, watched, engine, receiver):
    work(100, 10)  # 10 %: raised
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]
    work(100, 9)  # 19 / 200 = 9.5 %: under the threshold, above the 8 % recovery level
    clock.advance(1)
    assert watched.tick() == error_rate.Changes()
    work(100, 0)  # 19 / 300 = 6.3 %: recovered
    clock.advance(1)
    assert watched.tick().recovered == [DAEMON]
    work(100, 15)  # 34 / 400 = 8.5 %: above recovery, under the threshold: nothing
    clock.advance(1)
    assert watched.tick() == error_rate.Changes()
    assert [(a.alert_type, a.payload["tasks"], a.payload["failedTasks"]) for a in _alerts(engine)] == [
        ("daemon.error_rate_high", 100, 10),
        ("daemon.error_rate_ok", 300, 19),
    ]
    ok = [r.json for r in receiver.received if r.json["type"] == "daemon.error_rate_ok"]
    assert [(a["daemonId"], a["errorRate"]) for a in ok] == [(DAEMON, pytest.approx(19 / 300))]


def test_recovery_level_can_be_set(clock, work, watched, engine):
    watched.configure(alert_error_rate_recovery=0.02)
    work(100, 10)
    clock.advance(1)
    watched.tick()
    work(300, 0)  # 10 / 400 = 2.5 %: not yet
    clock.advance(1)
    assert watched.tick().recovered == []
    work(100, 0)  # 10 / 500 = 2 %
    clock.advance(1)
    assert watched.tick().recovered == [DAEMON]


def test_the_window_slides_past_the_failures(clock, work, watched, elapse, engine):
    work(40, 20)
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]
    # The failures were reported at 12:00:00; 15 minutes on, the window no longer holds them.
    assert elapse(14 * 60).recovered == []
    seen = elapse(90)
    assert seen.recovered == [DAEMON]
    [_high, ok] = _alerts(engine)
    assert ok.payload == {**ok.payload, "tasks": 0, "failedTasks": 0, "errorRate": None}


def test_a_longer_window_keeps_older_failures(clock, work, watched, elapse):
    watched.configure(alert_error_rate_window=timedelta(hours=1))
    work(40, 20)
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]
    assert elapse(50 * 60).recovered == []


def test_each_daemon_is_judged_on_its_own(clock, work, watched):
    work(100, 50, daemon_id="bad")
    work(100, 1, daemon_id="good")
    clock.advance(1)
    assert watched.tick().raised == ["bad"]


def test_a_raised_alert_survives_a_restarted_watcher(clock, work, watched):
    work(100, 50)
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]
    watched.configure()  # a new watcher (and app) on the same database
    clock.advance(1)
    assert watched.tick() == error_rate.Changes()


def test_error_rate_alerts_can_be_left_out_of_alert_events(clock, work, watched, receiver):
    watched.configure(alert_events=("daemon.stale",))
    work(100, 50)
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]  # still tracked, so turning it on later does not re-page
    assert receiver.received == []


def test_two_racing_watchers_raise_and_recover_each_daemon_once(pg_engine, postgres_database, clock, receiver):
    settings = Settings(
        database_url=postgres_database,
        admin_api_keys=(API_KEY,),
        alert_webhook_urls=(receiver.url,),
        alert_webhook_secret=SECRET,
        alert_error_rate_threshold=0.1,
    )
    apps = [create_app(settings, clock=clock) for _ in range(2)]
    client = apps[0].test_client()
    ids = [f"daemon_{n:02d}" for n in range(40)]

    def report(tasks: int, failed: int) -> None:
        for daemon_id in ids:
            body = heartbeat_body(daemonId=daemon_id, tasksProcessed=tasks, tasksFailed=failed)
            assert client.post("/api/daemon/heartbeat", json=body, headers=HEADERS).status_code == 200

    def tick_together(times: int) -> list[error_rate.Changes]:
        changes = []
        for _ in range(times):
            clock.advance(5)
            barrier = threading.Barrier(2)

            def tick(app, lanes):
                barrier.wait()
                return watchers.tick(watcher_of(app), lanes).error_rate_alerts

            with ThreadPoolExecutor(2) as pair:
                changes += list(pair.map(tick, apps, lanes))
            assert all(each.wait_idle(timeout=60) for each in lanes)
        return changes

    try:
        with Lanes() as first, Lanes() as second:
            lanes = (first, second)
            for daemon_id in ids:
                client.post("/api/daemon/register", json=registration(daemonId=daemon_id), headers=HEADERS)
            report(40, 20)
            raised = Counter(d for c in tick_together(3) for d in c.raised)
            report(440, 20)  # 20 / 440 = 4.5 %
            recovered = Counter(d for c in tick_together(3) for d in c.recovered)
    finally:
        for app in apps:
            database(app).dispose()
    assert raised == recovered == Counter(ids)
    received = Counter((r.json["type"], r.json["daemonId"]) for r in receiver.received)
    assert received == Counter(
        {(kind, d): 1 for kind in ("daemon.error_rate_high", "daemon.error_rate_ok") for d in ids}
    )
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alert_events)).scalar_one() == 2 * len(ids)
        states = conn.execute(
            select(alert_deliveries.c.state, func.count()).group_by(alert_deliveries.c.state)
        ).all()
    assert states == [("delivered", 2 * len(ids))]


def test_inside_a_maintenance_window_the_alert_is_recorded_but_not_sent(
    clock, client, work, watched, receiver, engine
):
    window = {"from": clock.now().isoformat(), "to": (clock.now() + timedelta(minutes=10)).isoformat(),
              "reason": "load test", "daemonIds": [DAEMON]}
    assert client.post("/api/maintenance", json=window, headers=HEADERS).status_code == 201
    work(40, 20)
    clock.advance(1)
    assert watched.tick().raised == [DAEMON]  # raised and recorded as always
    assert receiver.received == []
    with engine.connect() as conn:
        states = conn.execute(select(alert_deliveries.c.state)).scalars().all()
    assert states == ["suppressed"]
