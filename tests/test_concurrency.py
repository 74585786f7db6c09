"""Concurrency claims, on real Postgres with one connection per reader.

Many workers on many hosts read /health at once; each expired daemon must be
reported stale exactly once, and a heartbeat racing the reaper must either
win (daemon stays) or lose (404, reported stale), never both or neither.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from app import create_app
from app.alerts import watcher as watchers
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from app.http.context import database
from app.models import alert_deliveries, daemon_events, daemons
from app.registry import service
from app.registry.schemas import HeartbeatIn, RegistrationIn
from config import Settings
from tests.support.api import API_KEY, heartbeat_body, registration
from tests.support.clocks import START
from tests.support.postgres import migrate
from tests.support.webhook_receiver import start_receiver

TTL = timedelta(seconds=60)
READERS = 8


def _register_many(engine, count: int) -> list[str]:
    ids = [f"daemon_{n:04d}" for n in range(count)]
    with engine.connect() as conn:
        for daemon_id in ids:
            reg = RegistrationIn.model_validate(registration(daemonId=daemon_id))
            service.register(conn, reg, now=START, ttl=TTL)
    return ids


def _in_parallel(engine, work, count: int):
    """Run ``work(conn)`` on ``count`` connections released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(_):
        with engine.connect() as conn:
            barrier.wait()
            return work(conn)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_each_stale_daemon_is_reported_exactly_once_across_readers(pg_engine):
    ids = _register_many(pg_engine, 300)
    later = START + TTL + timedelta(seconds=1)

    reports = _in_parallel(
        pg_engine, lambda conn: json.loads(service.health(conn, now=later)), READERS
    )

    counts = Counter(d["daemonId"] for report in reports for d in report["stale"])
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    assert all(report["activeDaemons"] == [] for report in reports)
    with pg_engine.connect() as conn:
        stale_events = conn.execute(
            select(func.count()).where(daemon_events.c.kind == "stale")
        ).scalar_one()
    assert stale_events == len(ids)


def test_heartbeat_racing_the_reaper_is_never_lost_nor_doubled(pg_engine):
    ids = _register_many(pg_engine, 200)
    # The heartbeats arrive just inside the TTL; the readers' clock says just past it.
    beat_time = START + TTL - timedelta(milliseconds=1)
    read_time = START + TTL + timedelta(milliseconds=1)
    succeeded: set[str] = set()
    lock = threading.Lock()

    def beat_all(conn):
        for daemon_id in ids:
            beat = HeartbeatIn.model_validate(heartbeat_body(daemonId=daemon_id))
            if service.heartbeat(conn, beat, now=beat_time, ttl=TTL):
                with lock:
                    succeeded.add(daemon_id)
        return None

    def read(conn):
        return json.loads(service.health(conn, now=read_time))

    work = [beat_all, read, read, read]
    barrier = threading.Barrier(len(work))

    def run(job):
        with pg_engine.connect() as conn:
            barrier.wait()
            return job(conn)

    with ThreadPoolExecutor(len(work)) as pool:
        results = list(pool.map(run, work))

    stale = Counter(d["daemonId"] for report in results[1:] for d in report["stale"])
    assert set(stale.values()) <= {1}
    # Every daemon either got its heartbeat in (and stays) or was reaped first.
    assert succeeded.isdisjoint(stale)
    assert succeeded | set(stale) == set(ids)
    with pg_engine.connect() as conn:
        remaining = set(conn.execute(select(daemons.c.daemon_id)).scalars())
    assert remaining == succeeded


def test_concurrent_registrations_of_one_id_leave_one_row(pg_engine):
    def register(conn):
        reg = RegistrationIn.model_validate(registration(daemonId="racer"))
        service.register(conn, reg, now=START, ttl=TTL)

    _in_parallel(pg_engine, register, READERS)
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(daemons)).scalar_one() == 1


def test_two_watchers_racing_produce_each_stale_event_and_alert_once(postgres_database, clock):
    """Two watchers (own apps, own engines, own threads) tick at the same moments."""
    migrate(postgres_database)
    receiver = start_receiver()
    settings = Settings(
        database_url=postgres_database,
        admin_api_keys=(API_KEY,),
        alert_webhook_urls=(receiver.url,),
        alert_webhook_secret="webhook-secret-0123456789",
    )
    apps = [create_app(settings, clock=clock) for _ in range(2)]
    engine = database(apps[0]).engine
    try:
        with engine.begin() as conn:
            for table in (alert_deliveries, daemon_events, daemons):
                conn.execute(delete(table))
        ids = _register_many(engine, 150)
        clock.current = START
        with Lanes() as first, Lanes() as second:
            reports = []
            for _ in range(8):  # 80 s of watching, both watchers ticking together
                clock.advance(10)
                barrier = threading.Barrier(2)

                def tick(app, lanes):
                    barrier.wait()
                    return watchers.tick(watcher_of(app), lanes)

                with ThreadPoolExecutor(2) as pair:
                    reports += list(pair.map(tick, apps, (first, second)))
                assert first.wait_idle(timeout=60) and second.wait_idle(timeout=60)
        stale = Counter(d for report in reports for d in report.stale)
        assert set(stale) == set(ids) and set(stale.values()) == {1}
        with engine.connect() as conn:
            stale_events = conn.execute(
                select(func.count()).where(daemon_events.c.kind == "stale")
            ).scalar_one()
            deliveries = conn.execute(
                select(alert_deliveries.c.state, func.count()).group_by(alert_deliveries.c.state)
            ).all()
        assert stale_events == len(ids)
        assert deliveries == [("delivered", len(ids))]
        received = Counter(r.json["daemonId"] for r in receiver.received)
        assert set(received) == set(ids) and set(received.values()) == {1}
    finally:
        receiver.stop()
        for app in apps:
            database(app).dispose()
