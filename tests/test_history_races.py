"""History under same-daemon races, on real Postgres.

Each route reads the clock before its transaction waits for the daemon's row
lock, so the writer that goes second may carry the earlier time. However
registrations, heartbeats (same and new status), deregistrations, /health
reads and the watcher's expiry records interleave for one daemon, its spans
must chain: none ends before it starts, none overlaps the next, one at most
is open, and uptime's down intervals never run backwards.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from app.models import STATUSES, daemon_events, daemons
from app.registry import service
from app.registry.schemas import HeartbeatIn, RegistrationIn
from app.uptime.period import Period
from app.uptime.queries import down_intervals
from tests.support.api import heartbeat_body, registration
from tests.support.clocks import START
from tests.support.paths import ROOT

DAEMON = "racer"
TTL = timedelta(milliseconds=300)
THREADS = 8
ROUNDS = 150
# Requests of one round read the clock up to this far apart, then race for the
# lock: more than the TTL, so a waiting heartbeat can extend a row that a /health
# statement which began before it commits still finds expired.
SKEW_MS = 400
# Between rounds time moves a little (the daemon stays up) or past the TTL (it expires).
STEPS_MS = (100, 300, 900, 1400)


def _register(conn: Connection, now: datetime, rng: random.Random) -> None:
    reg = RegistrationIn.model_validate(registration(daemonId=DAEMON))
    service.register(conn, reg, now=now, ttl=TTL)


def _heartbeat(conn: Connection, now: datetime, rng: random.Random) -> None:
    # A random status: sometimes the current one (the one-UPDATE path), sometimes a change.
    beat = HeartbeatIn.model_validate(heartbeat_body(daemonId=DAEMON, status=rng.choice(STATUSES)))
    service.heartbeat(conn, beat, now=now, ttl=TTL)


def _deregister(conn: Connection, now: datetime, rng: random.Random) -> None:
    service.deregister(conn, DAEMON, now=now)


def _health(conn: Connection, now: datetime, rng: random.Random) -> None:
    service.health(conn, now=now)


def _record_expiries(conn: Connection, now: datetime, rng: random.Random) -> None:
    service.record_expiries(conn, now=now)


OPERATIONS: list[Callable[[Connection, datetime, random.Random], None]] = [
    _register,
    _heartbeat,
    _heartbeat,
    _deregister,
    _health,
    _record_expiries,
]


def _race(engine: Engine, seed: int) -> datetime:
    """Run the rounds; return the time after the last one."""
    rng = random.Random(seed)
    barrier = threading.Barrier(THREADS)
    base = START
    with engine.connect() as conn:
        _register(conn, base, rng)
    connections = [engine.connect() for _ in range(THREADS)]
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            for _ in range(ROUNDS):
                base += timedelta(milliseconds=rng.choice(STEPS_MS))
                jobs = [
                    (
                        connections[n],
                        rng.choice(OPERATIONS),
                        base + timedelta(milliseconds=rng.randrange(SKEW_MS)),
                        random.Random(rng.random()),
                    )
                    for n in range(THREADS)
                ]

                def run(job) -> None:
                    conn, operation, now, own_rng = job
                    barrier.wait()
                    operation(conn, now, own_rng)

                list(pool.map(run, jobs))
    finally:
        for conn in connections:
            conn.close()
    return base + timedelta(milliseconds=SKEW_MS)


def _spans(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(daemon_events)
            .where(daemon_events.c.daemon_id == DAEMON)
            .order_by(daemon_events.c.occurred_at, daemon_events.c.id)
        ).all()


def _show(span) -> str:
    return f"#{span.id} {span.kind} {span.occurred_at:%H:%M:%S.%f}..{span.ended_at and f'{span.ended_at:%H:%M:%S.%f}'}"


def _chain_problems(spans: list) -> list[str]:
    problems = [f"negative: {_show(s)}" for s in spans if s.ended_at is not None and s.ended_at < s.occurred_at]
    open_spans = [s for s in spans if s.ended_at is None]
    if len(open_spans) > 1:
        problems.append(f"{len(open_spans)} open: {[_show(s) for s in open_spans]}")
    for before, after in zip(spans, spans[1:]):
        # Each event ends the span its predecessor began, at its own start.
        if before.ended_at != after.occurred_at:
            problems.append(f"no chain: {_show(before)} then {_show(after)}")
    return problems


def _assert_history_matches_registry(engine: Engine, spans: list) -> None:
    with engine.connect() as conn:
        row = conn.execute(select(daemons).where(daemons.c.daemon_id == DAEMON)).first()
    last = spans[-1]
    if row is None:
        assert last.kind in ("stale", "deregistered"), f"gone, yet history ends with {last}"
    elif row.stale_recorded_at is not None:
        assert last.kind == "stale", f"recorded stale, yet history ends with {last}"
    else:
        assert last.kind in ("registered", "status_changed"), f"live, yet history ends with {last}"
        assert last.status == row.status


def _assert_down_intervals_run_forwards(engine: Engine, end: datetime) -> None:
    period = Period(start=START - timedelta(minutes=1), end=end, now=end)
    with engine.connect() as conn:
        intervals = down_intervals(conn, period, DAEMON)
    assert intervals, "the race never took the daemon down: the test proves nothing"
    backwards = [i for i in intervals if datetime.fromisoformat(i["to"]) < datetime.fromisoformat(i["from"])]
    assert not backwards, f"{len(backwards)} down intervals end before they start: {backwards[:3]}"
    for before, after in zip(intervals, intervals[1:]):
        assert datetime.fromisoformat(before["to"]) <= datetime.fromisoformat(after["from"]), (before, after)
    with engine.connect() as conn:
        # The same in SQL, for people with psql.
        backwards_in_sql = conn.execute(
            text("SELECT count(*) FROM daemon_outages WHERE daemon_id = :d AND ended_at <= started_at"),
            {"d": DAEMON},
        ).scalar_one()
    assert backwards_in_sql == 0


def test_same_daemon_races_leave_a_chain_of_spans(pg_engine):
    for seed in range(3):
        with pg_engine.begin() as conn:
            conn.execute(daemon_events.delete())
            conn.execute(daemons.delete())
        end = _race(pg_engine, seed)
        spans = _spans(pg_engine)
        assert len(spans) > ROUNDS // 2, "too few events: the operations did not race"
        problems = _chain_problems(spans)
        assert not problems, f"seed {seed}, {len(problems)} problems: {problems[:6]}"
        _assert_history_matches_registry(pg_engine, spans)
        _assert_down_intervals_run_forwards(pg_engine, end)


def _event(daemon_id: str, kind: str, seconds: int) -> dict:
    at = START + timedelta(seconds=seconds)
    return {"daemon_id": daemon_id, "kind": kind, "occurred_at": at, "recorded_at": at, "status": None}


def test_the_database_refuses_a_second_open_event(pg_engine):
    with pg_engine.begin() as conn:
        conn.execute(insert(daemon_events), [_event(DAEMON, "registered", 0)])
    with pytest.raises(IntegrityError), pg_engine.begin() as conn:
        conn.execute(insert(daemon_events), [_event(DAEMON, "stale", 1)])


def test_upgrade_closes_every_open_event_but_the_latest(empty_database):
    # Left by racing writers before 0008: three open events, out of insertion order.
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", empty_database)
    command.upgrade(config, "0004")
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(
            insert(daemon_events),
            [_event(DAEMON, "registered", 0), _event(DAEMON, "status_changed", 5), _event(DAEMON, "stale", 3)],
        )
    command.upgrade(config, "0008")
    with engine.connect() as conn:
        spans = conn.execute(
            select(daemon_events.c.kind, daemon_events.c.ended_at).order_by(daemon_events.c.occurred_at)
        ).all()
    engine.dispose()
    assert [tuple(span) for span in spans] == [
        ("registered", START + timedelta(seconds=3)),
        ("stale", START + timedelta(seconds=5)),
        ("status_changed", None),
    ]
