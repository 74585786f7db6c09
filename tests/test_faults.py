"""Faults on the real service (gunicorn, two sync workers), each bounded in time.

- Postgres stops under load and comes back: fast 503 JSON while it is gone,
  recovery without restarting gunicorn, nothing acknowledged lost. (A private
  cluster of our own: the shared server on 5432 is never touched.)
- The limiter's Redis dies and comes back: the service keeps serving on
  per-process counters, then goes back to the shared count. (A private
  redis-server of our own.)
- Thousands of distinct wrong keys from one address: the limit holds.
- SIGTERM to gunicorn's master in the middle of registrations: requests inside
  the app finish; nothing is left half-written.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.api import heartbeat_body, registration
from tests.support.deployment import (
    LoadThreads,
    Outcome,
    limiter_hits,
    private_postgres_cluster,
    private_redis,
)
from tests.support.gunicorn_servers import Gunicorn
from tests.support.http_client import Reply, concurrently, request
from tests.support.postgres import migrate_with_alembic

ADMIN_KEY = "faults-admin-key-0123456789"
HEALTH = "/api/daemon/health"
REGISTER = "/api/daemon/register"
HEARTBEAT = "/api/daemon/heartbeat"
ATTEMPTS = 3


def _assert_json_error(reply: Reply) -> None:
    assert reply.content_type == "application/json", (reply.status, reply.content_type,
                                                      reply.body[:300])
    assert b"<html" not in reply.body.lower() and b"Traceback" not in reply.body
    assert isinstance(reply.json().get("error"), str), reply.body


def _send(port: int, kind: str, path: str, body: dict | None, daemon_id: str | None,
          record, *, source: str = "127.0.0.1", method: str = "POST") -> Outcome:
    started = time.monotonic()
    try:
        reply = request(port, method, path, body=body, api_key=ADMIN_KEY, source=source,
                        timeout=15)
        outcome = Outcome(kind, started, time.monotonic(), reply.status, reply=reply,
                          daemon_id=daemon_id)
    except OSError as exc:  # refused, reset, closed without answer (http.client errors too)
        outcome = Outcome(kind, started, time.monotonic(), error=type(exc).__name__,
                          daemon_id=daemon_id)
    record(outcome)
    return outcome


# ----------------------------------------------------------- 5. Postgres stops


def test_postgres_stop_mid_load_fails_fast_then_recovers_and_loses_nothing(start_gunicorn):
    run = uuid.uuid4().hex[:8]
    with private_postgres_cluster() as cluster:
        admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE daemon_health"))
        admin.dispose()
        url = cluster.url("daemon_health")
        migrate_with_alembic(url)
        server = start_gunicorn(
            ADMIN_API_KEY=ADMIN_KEY, DATABASE_URL=url, DATABASE_TIMEOUT_SECONDS="2",
            ADMIN_RATE_LIMIT="1000000 per minute", RATELIMIT_STORAGE_URI="memory://",
        )
        acked_tasks: dict[str, int] = {}

        def work(index: int, stop: threading.Event, record) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                daemon_id = f"pg-{run}-{index}-{n}"
                reg = _send(server.port, "register", REGISTER, registration(daemonId=daemon_id),
                            daemon_id, record)
                if reg.status == 201:
                    tasks = random.randrange(1, 10**9)
                    beat = _send(server.port, "heartbeat", HEARTBEAT,
                                 heartbeat_body(daemonId=daemon_id, tasksProcessed=tasks),
                                 daemon_id, record)
                    if beat.status == 200:
                        acked_tasks[daemon_id] = tasks
                time.sleep(0.02)

        with LoadThreads(4, work) as load:
            threading.Event().wait(1.5)
            assert any(o.status == 201 for o in load.snapshot()), load.snapshot()[:3]
            stopping = time.monotonic()
            cluster.stop("fast")
            down = time.monotonic()
            threading.Event().wait(5)
            restarting = time.monotonic()
            cluster.start()
            up = time.monotonic()
            # Bounded: the first success after the restart, then 1.5 s more of traffic.
            deadline = up + 10
            recovered = None
            while recovered is None and time.monotonic() < deadline:
                successes = [o.ended for o in load.snapshot()
                             if o.started >= up and o.status in (200, 201)]
                recovered = min(successes) if successes else None
                time.sleep(0.05)
            assert recovered is not None, (
                f"no success within 10 s of Postgres' return\n{server.output()}")
            threading.Event().wait(1.5)
        server.stop()
        outcomes = load.snapshot()

        # Every answer: 2xx or a fast 503 in the contract's JSON, never a hang or a 500.
        assert not [o for o in outcomes if o.error], Counter(o.error for o in outcomes)
        assert Counter(o.status for o in outcomes).keys() <= {200, 201, 503}, Counter(
            o.status for o in outcomes)
        slowest = max(o.ended - o.started for o in outcomes)
        assert slowest < 3.5, f"slowest answer {slowest:.2f}s"
        for o in outcomes:
            if o.status == 503:
                _assert_json_error(o.reply)
                assert o.reply.json() == {"error": "Database unavailable; retry shortly"}
                assert o.reply.headers.get("Retry-After", "").isdigit(), o.reply.headers
        while_down = [o for o in outcomes if o.started >= down and o.ended <= restarting]
        assert len(while_down) >= 20, len(while_down)
        assert {o.status for o in while_down} == {503}
        # Once back, everything succeeds (no poisoned pool connections linger).
        settled = [o for o in outcomes if o.started >= recovered + 0.5]
        assert settled and {o.status for o in settled} <= {200, 201}, Counter(
            o.status for o in settled)
        # The outage is in the log, as a warning, not as tracebacks of 500s.
        assert "database unavailable" in server.stderr()
        assert "unhandled error" not in server.stderr(), server.stderr()[-3000:]
        assert "Traceback" not in server.stderr(), server.stderr()[-3000:]

        # Nothing acknowledged is lost: every 201 is a row with its 'registered'
        # event; every acknowledged heartbeat's value is what is stored.
        created = {o.daemon_id for o in outcomes if o.kind == "register" and o.status == 201}
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                rows = dict(conn.execute(text(
                    "SELECT daemon_id, tasks_processed FROM daemons WHERE daemon_id LIKE :r"),
                    {"r": f"pg-{run}-%"}).all())
                registered = {r for (r,) in conn.execute(text(
                    "SELECT daemon_id FROM daemon_events WHERE kind = 'registered' "
                    "AND daemon_id LIKE :r"), {"r": f"pg-{run}-%"})}
        finally:
            engine.dispose()
        assert created <= rows.keys(), sorted(created - rows.keys())[:5]
        assert created <= registered
        assert rows.keys() <= registered, "a daemons row without its 'registered' event"
        assert {d: rows[d] for d in acked_tasks} == acked_tasks
        print(f"\npostgres: stop took {down - stopping:.2f}s, {len(while_down)} answers while "
              f"down (all 503, slowest overall {slowest:.2f}s), first success "
              f"{recovered - up:.2f}s after restart, {len(created)} registrations acknowledged "
              f"and all stored, {len(acked_tasks)} heartbeats checked")


# ------------------------------------------------------------- 6. Redis stops

LIMIT = 10


def _burst(server: Gunicorn, source: str, count: int) -> tuple[list[Reply], dict[str, int]]:
    """``count`` health reads from ``source``; returns the replies and requests per worker pid."""
    mark = server.log_mark()
    replies = concurrently(
        [lambda: request(server.port, "GET", HEALTH, api_key=ADMIN_KEY, source=source)] * count,
        threads=4)
    server.served_by("GET", HEALTH, count=count, since=mark)
    per_pid = Counter(line["pid"] for line in server.access_log()[mark:]
                      if line["path"] == HEALTH)
    return replies, dict(per_pid)


def test_redis_outage_fails_open_to_per_process_limits_then_recovers(
    start_gunicorn, migrated_postgres_url, tmp_path: Path
):
    prefix = f"faults-{uuid.uuid4().hex}"
    with private_redis(tmp_path / "redis") as redis_server:
        server = start_gunicorn(
            ADMIN_API_KEY=ADMIN_KEY, DATABASE_URL=migrated_postgres_url,
            ADMIN_RATE_LIMIT=f"{LIMIT} per minute", RATELIMIT_STORAGE_URI=redis_server.url,
            RATELIMIT_KEY_PREFIX=prefix,
        )
        workers = 2
        sources = (f"127.0.7.{n}" for n in range(1, 200))

        def shared_burst() -> None:
            """3 x LIMIT on both workers: exactly LIMIT pass, all counted in Redis."""
            for _attempt in range(ATTEMPTS):
                source = next(sources)
                replies, per_pid = _burst(server, source, 3 * LIMIT)
                assert Counter(r.status for r in replies) == {200: LIMIT, 429: 2 * LIMIT}
                with redis_server.client() as client:
                    assert limiter_hits(client, prefix, source) == 3 * LIMIT
                if len(per_pid) == workers:
                    return
            pytest.fail("bursts never reached both workers")

        # Redis up: one shared count.
        shared_burst()
        exhausted = "127.0.0.1"
        replies, _ = _burst(server, exhausted, LIMIT + 2)
        assert Counter(r.status for r in replies) == {200: LIMIT, 429: 2}

        redis_server.kill()
        killed = time.monotonic()
        # Redis gone: answers stay fast and successful. The address Redis had
        # just limited passes again: each process counts on its own now.
        replies, _ = _burst(server, exhausted, 8)
        assert [r.status for r in replies] == [200] * 8, [(r.status, r.body) for r in replies]
        assert max(r.elapsed for r in replies) < 1.5, [r.elapsed for r in replies]
        # ...and those per-process limits hold: each worker lets LIMIT through.
        source = next(sources)
        replies, per_pid = _burst(server, source, 3 * LIMIT)
        passed = sum(r.status == 200 for r in replies)
        assert passed == sum(min(n, LIMIT) for n in per_pid.values()), (passed, per_pid)
        assert {r.status for r in replies} <= {200, 429}
        assert max(r.elapsed for r in replies) < 1.5

        # Keep traffic going for a while, as there would be: each process retries
        # Redis on a request, with Flask-Limiter's backoff (after 1, 2, 4, 8 ... s),
        # so the checks in this stretch fail and the next one comes about 4 s
        # after Redis is back.
        while time.monotonic() - killed < 3.5:
            replies, _ = _burst(server, next(sources), 2)
            assert {r.status for r in replies} == {200}
            threading.Event().wait(0.3)
        redis_server.start()  # same port, empty (no persistence)
        restarted = time.monotonic()

        # Wait, bounded, until every worker has counted a request in Redis again.
        probe = next(sources)
        back: set[str] = set()
        counted = 0
        deadline = restarted + 15
        while len(back) < workers and time.monotonic() < deadline:
            _replies, per_pid = _burst(server, probe, 4)
            with redis_server.client() as client:
                now_counted = limiter_hits(client, prefix, probe)
            if now_counted - counted == 4:  # every request of this batch went to Redis
                back |= set(per_pid)
            counted = now_counted
            time.sleep(0.25)
        recovery = time.monotonic() - restarted
        assert len(back) == workers, (
            f"workers {sorted(back)} back on Redis after {recovery:.1f}s; others still on "
            f"per-process counters\n{server.output()}")
        # Shared again: exactly LIMIT of a burst pass, across both workers.
        shared_burst()
        print(f"\nredis: served on per-process limits while down; both workers back on Redis "
              f"{recovery:.1f}s after its restart")
        server.stop()
    # Operators hear of both changes, from each worker, in gunicorn's output,
    # timestamped like gunicorn's own lines (Flask-Limiter's words for them).
    errors = server.stderr()
    stamped = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(WARNING|INFO)\] "
    lost = re.findall(stamped + "Rate limit storage unreachable", errors, re.MULTILINE)
    back = re.findall(stamped + "Rate limit storage recovered", errors, re.MULTILINE)
    assert len(lost) == workers, errors[-2000:]
    assert len(back) == workers, errors[-2000:]


def http_ok(server: Gunicorn) -> bool:
    return request(server.port, "GET", HEALTH, api_key=ADMIN_KEY).status == 200


# ---------------------------------------------------------- 7. hostile volume


def test_thousands_of_wrong_keys_from_one_address_are_rate_limited(
    start_gunicorn, migrated_postgres_url, redis_url, key_prefix
):
    limit, total = 50, 2000
    server = start_gunicorn(
        ADMIN_API_KEY=ADMIN_KEY, DATABASE_URL=migrated_postgres_url,
        ADMIN_RATE_LIMIT=f"{limit} per minute", RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_KEY_PREFIX=key_prefix,
    )
    rng = random.Random(7)

    def guess(n: int) -> tuple[str, Reply]:
        key = f"guess-{n:05d}-{uuid.uuid4().hex}"
        # Each guess also claims another origin: without trusted proxies it changes nothing.
        forged = {"X-Forwarded-For": f"198.51.{rng.randrange(256)}.{rng.randrange(256)}"}
        return key, request(server.port, "GET", HEALTH, api_key=key, headers=forged, timeout=15)

    mark = server.log_mark()
    started = time.monotonic()
    results = concurrently([lambda n=n: guess(n) for n in range(total)], threads=8)
    elapsed = time.monotonic() - started
    replies = [reply for _key, reply in results]
    assert Counter(r.status for r in replies) == {401: limit, 429: total - limit}
    for key, reply in results:
        _assert_json_error(reply)
        assert key.encode() not in reply.body  # a guess is never echoed back
    assert len(server.served_by("GET", HEALTH, count=total, since=mark)) == 2
    assert max(r.elapsed for r in replies) < 5
    # The right key from the same address is limited too (counted before auth)...
    assert request(server.port, "GET", HEALTH, api_key=ADMIN_KEY).status == 429
    # ...while another client is unaffected.
    assert request(server.port, "GET", HEALTH, api_key=ADMIN_KEY, source="127.0.0.2").status == 200
    assert "guess-" not in server.stdout() + server.stderr()  # keys stay out of the logs
    print(f"\nhostile: {total} wrong keys in {elapsed:.1f}s -> 50 x 401, {total - limit} x 429")


# ---------------------------------------------------------- 8. graceful stop


def test_sigterm_finishes_requests_in_the_app_and_leaves_no_half_written_state(
    start_gunicorn, migrated_postgres_url
):
    run = uuid.uuid4().hex[:8]
    server = start_gunicorn(
        ADMIN_API_KEY=ADMIN_KEY, DATABASE_URL=migrated_postgres_url,
        # Room for the 1 s table lock below inside statement_timeout.
        DATABASE_TIMEOUT_SECONDS="5",
        ADMIN_RATE_LIMIT="1000000 per minute", RATELIMIT_STORAGE_URI="memory://",
    )
    engine = create_engine(migrated_postgres_url)

    def work(index: int, stop: threading.Event, record) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            daemon_id = f"term-{run}-{index}-{n}"
            outcome = _send(server.port, "register", REGISTER, registration(daemonId=daemon_id),
                            daemon_id, record)
            if outcome.error == "ConnectionRefusedError":
                time.sleep(0.05)

    try:
        with LoadThreads(4, work) as load, engine.connect() as locker, engine.connect() as watcher:
            threading.Event().wait(1.0)
            assert any(o.status == 201 for o in load.snapshot())
            # Hold registrations inside both workers: a table lock makes their
            # SELECT ... FOR UPDATE wait, so each worker has a request in flight.
            locker.execute(text("LOCK TABLE daemons IN EXCLUSIVE MODE"))
            deadline = time.monotonic() + 5
            waiting = 0
            while waiting < 2 and time.monotonic() < deadline:
                waiting = watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar_one()
                watcher.rollback()
                time.sleep(0.02)
            assert waiting == 2, f"{waiting} workers waiting on the lock"
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            threading.Event().wait(0.5)
            released = time.monotonic()
            locker.rollback()  # the held requests go on
            code = server.process.wait(timeout=25)
            exited = time.monotonic()
            threading.Event().wait(0.3)
        outcomes = load.snapshot()
    finally:
        engine.dispose()
    assert code == 0, server.output()

    # The two requests inside the workers when the signal came finished with 201.
    finished_after = [o for o in outcomes if o.started < signalled and o.ended >= released
                      and o.status == 201]
    assert len(finished_after) == 2, [(o.status, o.error) for o in outcomes if o.ended >= released]
    assert Counter(o.status for o in outcomes if o.error is None) .keys() <= {201}
    # Others never got into a worker: reset from the listen backlog when the last
    # worker closed it, or refused afterwards.
    no_answer = Counter(o.error for o in outcomes if o.error)
    assert set(no_answer) <= {"ConnectionRefusedError", "ConnectionResetError",
                              "RemoteDisconnected", "BrokenPipeError"}, no_answer
    reset_before_signal = [o for o in outcomes if o.error and o.started < signalled]

    # No half-written state: the rows are exactly the acknowledged registrations,
    # each with its 'registered' event.
    created = {o.daemon_id for o in outcomes if o.status == 201}
    engine = create_engine(migrated_postgres_url)
    try:
        with engine.connect() as conn:
            rows = {r for (r,) in conn.execute(
                text("SELECT daemon_id FROM daemons WHERE daemon_id LIKE :r"),
                {"r": f"term-{run}-%"})}
            events = Counter(r for (r,) in conn.execute(
                text("SELECT daemon_id FROM daemon_events WHERE kind = 'registered' "
                     "AND daemon_id LIKE :r"), {"r": f"term-{run}-%"}))
    finally:
        engine.dispose()
    assert rows == created, (sorted(rows - created)[:5], sorted(created - rows)[:5])
    assert events == Counter(created), "every row has exactly one 'registered' event"
    print(f"\nsigterm: exited {exited - signalled:.2f}s after the signal; {len(finished_after)} "
          f"held requests finished with 201 after it; no answer: {dict(no_answer)} "
          f"({len(reset_before_signal)} of them sent before the signal); "
          f"{len(created)} rows == 201s")
