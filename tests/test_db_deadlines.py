"""Client-side deadlines on database calls, and the circuit breaker they open.

The end-to-end behaviour (a SIGSTOPped Postgres under gunicorn) is in
tests/test_database_freeze.py; these pin the parts: the watchdog cuts off
exactly the calls that outlive their deadline, every kind of Postgres call
(a statement, LoneUpdate's driver-level UPDATE) is covered, and the breaker
answers 503 without touching the database until a probe gets through.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import bindparam, create_engine, update
from sqlalchemy.exc import DBAPIError, OperationalError

from app import create_app
from app.http.context import connection, database
from app.models import daemons
from app.registry import service
from app.registry.schemas import RegistrationIn
from app.store.backend import LoneUpdate
from app.store.breaker import CircuitBreaker, DatabaseUnavailable
from app.store import deadlines
from app.store.deadlines import GRACE_SECONDS, CallGuard, Watchdog
from app.store.engine import build_engine
from config import Settings
from tests.support.api import API_KEY, registration
from tests.support.clocks import START

HEADERS = {"X-API-Key": API_KEY}


# ------------------------------------------------------------------ watchdog


@pytest.fixture
def watchdog() -> Watchdog:
    dog = Watchdog(resolution=0.02)
    dog.start()
    return dog


def test_watchdog_cuts_off_a_call_waiting_past_its_deadline(watchdog):
    timeouts = []
    ours, theirs = socket.socketpair()
    with ours, theirs:
        guard = CallGuard(ours.fileno(), 0.2, lambda: timeouts.append(time.monotonic()))
        started = time.monotonic()
        watchdog.arm(guard)
        ours.settimeout(5)
        assert ours.recv(1) == b""  # the wait ends: the socket was shut down
        waited = time.monotonic() - started
        watchdog.disarm(guard)
    assert 0.2 <= waited < 1.0, waited
    assert len(timeouts) == 1


def test_watchdog_leaves_a_call_that_ended_in_time_alone(watchdog):
    timeouts = []
    ours, theirs = socket.socketpair()
    with ours, theirs:
        guard = CallGuard(ours.fileno(), 0.1, lambda: timeouts.append(1))
        watchdog.arm(guard)
        watchdog.disarm(guard)
        time.sleep(0.3)
        theirs.sendall(b"x")
        ours.settimeout(5)
        assert ours.recv(1) == b"x"
    assert timeouts == []


# ------------------------------------------------------------ Postgres calls


@pytest.fixture
def bounded(postgres_database):
    """An engine whose calls may take 1 s (+ grace), and the timeouts it reported."""
    timeouts: list[float] = []
    engine = build_engine(postgres_database, timeout=1,
                          on_timeout=lambda: timeouts.append(time.monotonic()))
    yield engine, timeouts
    engine.dispose()


def _without_server_timeout(conn) -> None:
    # The server's statement_timeout stands for a live server; switched off,
    # the server behaves as a silent one would and only the client can end the wait.
    conn.exec_driver_sql("SET statement_timeout = 0")


def test_a_statement_past_its_deadline_fails_as_a_lost_connection(bounded):
    engine, timeouts = bounded
    with engine.connect() as conn:
        _without_server_timeout(conn)
        started = time.monotonic()
        with pytest.raises(OperationalError) as caught:
            conn.exec_driver_sql("SELECT pg_sleep(10)")
        waited = time.monotonic() - started
    assert caught.value.connection_invalidated
    assert 1 + GRACE_SECONDS <= waited < 1 + GRACE_SECONDS + 1, waited
    assert len(timeouts) == 1
    with engine.connect() as conn:  # the pool hands out a fresh connection
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_ending_a_transaction_is_bounded_only_when_one_is_open(bounded, monkeypatch, end):
    # The pool rolls back every connection it takes back; most have nothing
    # open (the heartbeat's UPDATE runs in autocommit), and then psycopg sends nothing.
    engine, _ = bounded
    armed: list[CallGuard] = []
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        arm = deadlines.WATCHDOG.arm
        monkeypatch.setattr(deadlines.WATCHDOG, "arm", lambda guard: (armed.append(guard), arm(guard)))
        getattr(driver, end)()
        assert armed == []
        driver.execute("SELECT 1")
        assert driver.pgconn.transaction_status == TransactionStatus.INTRANS
        armed.clear()  # the SELECT's own deadline
        getattr(driver, end)()
        assert armed == [driver.guard]
        assert driver.pgconn.transaction_status == TransactionStatus.IDLE


BEAT = LoneUpdate(
    update(daemons)
    .where(daemons.c.daemon_id == bindparam("beat_daemon_id"))
    .values(tasks_processed=bindparam("new_tasks_processed"))
)


def test_lone_update_on_the_driver_connection_is_bounded_too(bounded, pg_engine):
    engine, timeouts = bounded
    with pg_engine.connect() as conn:
        service.register(conn, RegistrationIn.model_validate(registration(daemonId="held")),
                         now=START, ttl=timedelta(seconds=60))
    holder = create_engine(pg_engine.url)
    try:
        with engine.connect() as conn, holder.connect() as locker:
            _without_server_timeout(conn)
            conn.commit()
            locker.exec_driver_sql("LOCK TABLE daemons IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(DBAPIError) as caught:
                BEAT.rowcount(conn, {"beat_daemon_id": "held", "new_tasks_processed": 7})
            waited = time.monotonic() - started
            locker.rollback()
    finally:
        holder.dispose()
    assert caught.value.connection_invalidated
    assert waited < 1 + GRACE_SECONDS + 1, waited
    assert len(timeouts) == 1


# ------------------------------------------------------------------- breaker


def test_breaker_fails_fast_while_open_and_closes_on_the_first_answered_probe():
    attempts = []

    def probe() -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise OSError("not yet")

    breaker = CircuitBreaker(probe, interval=0.01)
    breaker.check()  # closed: nothing happens
    breaker.trip()
    breaker.trip()  # already open: no second prober
    with pytest.raises(DatabaseUnavailable):
        breaker.check()
    deadline = time.monotonic() + 5
    while breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    breaker.check()
    assert len(attempts) == 3


def test_open_breaker_answers_503_json_without_touching_the_database(app, client):
    answered = threading.Event()

    def probe() -> None:  # the database "answers" when the test says so
        if not answered.wait(5):
            raise OSError("silent")

    db = database(app)
    db.breaker = CircuitBreaker(probe, interval=0.01)
    db.breaker.trip()
    checkouts_before = db.engine.pool.checkedout()
    started = time.monotonic()
    response = client.post("/api/daemon/heartbeat", json={"daemonId": "x", "status": "healthy",
                                                          "tasksProcessed": 1,
                                                          "lastHeartbeat": "2026-01-25T12:00:00Z"},
                           headers=HEADERS)
    assert time.monotonic() - started < 0.5
    assert response.status_code == 503
    assert response.get_json() == {"error": "Database unavailable; retry shortly"}
    assert response.headers["Retry-After"].isdigit()
    assert db.engine.pool.checkedout() == checkouts_before
    answered.set()
    deadline = time.monotonic() + 5
    while db.breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.get("/api/daemon/health", headers=HEADERS).status_code == 200


def test_no_pooled_connection_within_the_timeout_is_a_503(pg_engine, postgres_database):
    app = create_app(Settings(database_url=postgres_database, admin_api_keys=(API_KEY,),
                              database_timeout_seconds=1))
    engine = database(app).engine
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
    try:
        started = time.monotonic()
        response = app.test_client().get("/api/daemon/health", headers=HEADERS)
        waited = time.monotonic() - started
    finally:
        for conn in held:
            conn.close()
        database(app).dispose()
    assert response.status_code == 503, response.get_data()
    assert response.get_json() == {"error": "Database unavailable; retry shortly"}
    assert response.headers["Retry-After"].isdigit()
    assert 1 <= waited < 2, waited


def test_a_connection_lost_after_the_answer_does_not_turn_it_into_an_error(
    pg_engine, postgres_database, caplog
):
    # The request's transaction is still open at teardown (reads end that way);
    # the database goes away before the rollback that closes it.
    app = create_app(Settings(database_url=postgres_database, admin_api_keys=(API_KEY,)))
    try:
        with app.app_context():
            pid = connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with pg_engine.connect() as admin:
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
                admin.commit()
    finally:
        database(app).dispose()
    assert "database lost while closing a request's connection" in caplog.text
