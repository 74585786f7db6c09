"""The documented deployment, scripted with real parts.

Two gunicorn instances (``-c gunicorn.conf.py wsgi:app``, two sync workers each,
TRUSTED_PROXY_HOPS=1) share one Postgres database (made by ``alembic upgrade
head``) and one Redis limiter, behind a real nginx whose server block is
deploy/nginx.conf itself: the test reads the shipped file and replaces only the
listen address and the upstream servers (see tests/support/deployment.py),
so a change to that file is what gets tested. Two directives are shortened in
the test's copy, and only where named: client_body_timeout and
client_header_timeout (10 s shipped, 2 s here) so a stalled client is cut off
quickly.

The whole 127.0.0.0/8 range is local on Linux: a client socket bound to
127.0.0.2 is a second client host as far as nginx can tell. Each test speaks
from loopback addresses of its own, so each starts with fresh rate-limit buckets
in a deployment the tests share.

Two tests hold the shipped nginx config to the API's shape: nginx's own errors
(413, 502/504) are JSON, and a rolling restart (SIGTERM to one instance) loses
no POST queued in that instance's listen backlog (nginx retries it elsewhere).
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.api import heartbeat_body, registration
from tests.support.deployment import (
    LoadThreads,
    Nginx,
    Outcome,
    established_to,
    limiter_addresses,
    limiter_hits,
    nginx_binary,
    start_instances,
    start_nginx,
)
from tests.support.gunicorn_servers import Gunicorn
from tests.support.http_client import KeepAliveClient, Reply, concurrently, request
from tests.support.processes import service_env
from tests.support.redis_store import REDIS_URL, delete_redis_keys
from tests.support.unavailable import skip_or_fail

ADMIN_KEY = "deploy-admin-key-0123456789"
HEALTH = "/api/daemon/health"
REGISTER = "/api/daemon/register"
HEARTBEAT = "/api/daemon/heartbeat"
LIMIT = 20
ATTEMPTS = 3
BODY_LIMIT = 65536  # the service's MAX_CONTENT_LENGTH default and the shipped client_max_body_size
TEST_CLIENT_TIMEOUT = 2  # seconds, in the test's copy of the config only (10 s shipped)
LOAD_SECONDS = 10.0


# ------------------------------------------------------------------- deployment


@dataclass
class Deployment:
    nginx: Nginx
    instances: list[Gunicorn]
    key_prefix: str
    database_url: str

    @property
    def port(self) -> int:
        return self.nginx.port

    def marks(self) -> list[int]:
        return [server.log_mark() for server in self.instances]

    def served(
        self, marks: list[int], method: str, path: str, *, total: int
    ) -> set[tuple[int, str]]:
        """(instance, worker pid) pairs that answered ``total`` requests since ``marks``.

        Access-log lines are written after the response, so wait (bounded) for all.
        """
        deadline = time.monotonic() + 5
        while True:
            found = [
                (n, line["pid"])
                for n, (server, mark) in enumerate(zip(self.instances, marks, strict=True))
                for line in server.access_log()[mark:]
                if line["method"] == method and line["path"] == path
            ]
            if len(found) >= total or time.monotonic() > deadline:
                assert len(found) == total, f"{len(found)} of {total} {method} {path} logged"
                return set(found)
            time.sleep(0.02)

    def lines_since(self, marks: list[int], method: str, path: str) -> int:
        return sum(
            1 for server, mark in zip(self.instances, marks, strict=True)
            for line in server.access_log()[mark:]
            if line["method"] == method and line["path"] == path
        )

    def output(self) -> str:
        parts = [f"--- instance {n} ---\n{s.output()}" for n, s in enumerate(self.instances)]
        parts.append(f"--- nginx error.log ---\n{self.nginx.errors()[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        try:
            self.nginx.stop()
        finally:
            for server in reversed(self.instances):
                server.stop()


@contextmanager
def deployed(workdir: Path, database_url: str, **variables: str) -> Iterator[Deployment]:
    nginx_binary()  # skip (locally) or fail (CI) before starting anything
    prefix = f"deploy-test-{uuid.uuid4().hex}"
    env = service_env(
        WEB_CONCURRENCY="2",
        ADMIN_API_KEY=ADMIN_KEY,
        DATABASE_URL=database_url,
        TRUSTED_PROXY_HOPS="1",
        RATELIMIT_STORAGE_URI=REDIS_URL,
        RATELIMIT_KEY_PREFIX=prefix,
        **variables,
    )
    instances = start_instances(workdir / "gunicorn", env, count=2, workers=2)
    try:
        nginx = start_nginx(
            workdir / "nginx",
            upstream_ports=[server.port for server in instances],
            directives={
                "client_body_timeout": f"{TEST_CLIENT_TIMEOUT}s",
                "client_header_timeout": f"{TEST_CLIENT_TIMEOUT}s",
            },
        )
    except BaseException:
        for server in instances:
            server.stop()
        raise
    deployment = Deployment(nginx, instances, prefix, database_url)
    try:
        yield deployment
    finally:
        deployment.stop()
        delete_redis_keys(REDIS_URL, prefix)


@pytest.fixture(scope="module")
def shared_redis():
    """The local Redis on 6379 as a client (skip locally / fail under CI when it is down)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        client.close()
        skip_or_fail(f"Redis not reachable at {REDIS_URL}: {exc}")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory, migrated_postgres_url, shared_redis) -> Iterator[Deployment]:
    """A 20/minute admin limit and a 1 s TTL: for the limiter, stale and body tests."""
    with deployed(tmp_path_factory.mktemp("limited"), migrated_postgres_url,
                  ADMIN_RATE_LIMIT=f"{LIMIT} per minute", DAEMON_TTL_SECONDS="1") as deployment:
        yield deployment


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory, migrated_postgres_url, shared_redis) -> Iterator[Deployment]:
    """A limit far above the load test's rate; default TTL."""
    with deployed(tmp_path_factory.mktemp("unlimited"), migrated_postgres_url,
                  ADMIN_RATE_LIMIT="1000000 per minute") as deployment:
        yield deployment


def _health(deployment: Deployment, source: str, **headers: str) -> Reply:
    return request(deployment.port, "GET", HEALTH, api_key=ADMIN_KEY, source=source,
                   headers=headers or None)


def _assert_429_json(reply: Reply) -> None:
    assert reply.content_type == "application/json", (reply.content_type, reply.body[:200])
    assert reply.json()["error"].startswith("Rate limit exceeded"), reply.body
    assert 1 <= int(reply.headers["Retry-After"]) <= 61


# ------------------------------------------------------------------- 1. one limit


def test_rate_limit_is_shared_by_both_instances_and_all_workers(limited, shared_redis):
    """60 requests through nginx, spread over 2 instances x 2 workers: exactly 20 pass."""
    for attempt in range(ATTEMPTS):
        source = f"127.0.0.{10 + attempt}"  # a fresh bucket per attempt
        marks = limited.marks()
        replies = concurrently([lambda: _health(limited, source)] * (3 * LIMIT), threads=6)
        assert Counter(r.status for r in replies) == {200: LIMIT, 429: 2 * LIMIT}, (
            [(r.status, r.body[:100]) for r in replies if r.status not in (200, 429)],
            limited.output())
        for reply in replies:
            if reply.status == 429:
                _assert_429_json(reply)
        # Every request was counted in the one shared place.
        assert limiter_hits(shared_redis, limited.key_prefix, source) == 3 * LIMIT
        served = limited.served(marks, "GET", HEALTH, total=3 * LIMIT)
        if len(served) == 4:  # both instances, both workers of each
            return
    pytest.fail(f"{ATTEMPTS} bursts never reached all 4 workers (last: {sorted(served)})")


# ------------------------------------------------------- 2. the real client address


def test_limiter_counts_the_real_client_address_and_ignores_forged_headers(limited, shared_redis):
    forged = {"X-Forwarded-For": "203.0.113.9"}
    # From 127.0.0.1: every other request claims to come from 203.0.113.9. If the
    # claim were believed, the two halves would have a bucket each (30 would pass).
    first = concurrently(
        [lambda n=n: _health(limited, "127.0.0.1", **(forged if n % 2 else {}))
         for n in range(LIMIT + 10)],
        threads=4,
    )
    assert Counter(r.status for r in first) == {200: LIMIT, 429: 10}

    # From 127.0.0.2, forging the same header every time: a bucket of its own,
    # full although 127.0.0.1's is empty, and again not 203.0.113.9's.
    second = concurrently(
        [lambda: _health(limited, "127.0.0.2", **forged)] * (LIMIT + 10), threads=4)
    assert Counter(r.status for r in second) == {200: LIMIT, 429: 10}

    buckets = limiter_addresses(shared_redis, limited.key_prefix)
    assert {"127.0.0.1", "127.0.0.2"} <= buckets
    assert "203.0.113.9" not in buckets, buckets
    assert limiter_hits(shared_redis, limited.key_prefix, "127.0.0.1") == LIMIT + 10
    assert limiter_hits(shared_redis, limited.key_prefix, "127.0.0.2") == LIMIT + 10
    # nginx saw the two peers as they are (it logs after answering: wait, bounded).
    deadline = time.monotonic() + 5
    while True:
        seen = Counter(line.split(" ", 1)[0] for line in limited.nginx.access_log()
                       if f'"GET {HEALTH} ' in line)
        if seen["127.0.0.2"] >= LIMIT + 10 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert seen["127.0.0.1"] >= LIMIT + 10 and seen["127.0.0.2"] == LIMIT + 10, seen

    # Control: the same header sent straight to a gunicorn port (no nginx) does
    # choose the bucket. So the result above is nginx overwriting the header; the
    # gunicorn ports must only be reachable by nginx.
    direct = request(limited.instances[0].port, "GET", HEALTH, api_key=ADMIN_KEY,
                     source="127.0.0.3", headers=forged)
    assert direct.status == 200, direct.body
    assert "203.0.113.9" in limiter_addresses(shared_redis, limited.key_prefix)


# -------------------------------------------------------------- 3. stale exactly once


def test_stale_daemons_reported_exactly_once_across_instances(limited):
    """TTL 1 s: register 12 through nginx, wait 1.5 s, 16 concurrent readers through nginx."""
    readers = 16
    for attempt in range(ATTEMPTS):
        run = uuid.uuid4().hex[:8]
        ids = [f"deploy-{run}-{n:02d}" for n in range(12)]
        # Each sender has a loopback address (and so a 20/minute bucket) of its own.
        registered = concurrently(
            [lambda d=d: request(limited.port, "POST", REGISTER, body=registration(daemonId=d),
                                 api_key=ADMIN_KEY, source=f"127.0.1.{attempt + 1}")
             for d in ids],
            threads=4,
        )
        assert [r.status for r in registered] == [201] * len(ids), [r.body for r in registered]

        threading.Event().wait(1.5)  # real processes, real time: let the 1 s TTL run out

        marks = limited.marks()
        barrier = threading.Barrier(readers, timeout=10)

        def read(n: int) -> Reply:
            barrier.wait()
            return _health(limited, f"127.0.2.{attempt * readers + n + 1}")

        replies = concurrently([lambda n=n: read(n) for n in range(readers)], threads=readers)
        assert [r.status for r in replies] == [200] * readers, [r.body[:200] for r in replies]
        bodies = [r.json() for r in replies]
        reported = Counter(d["daemonId"] for body in bodies for d in body["stale"]
                           if d["daemonId"].startswith(f"deploy-{run}-"))
        assert reported == Counter(ids), reported
        assert not any(d["daemonId"].startswith(f"deploy-{run}-")
                       for body in bodies for d in body["activeDaemons"])
        _assert_one_stale_event_each(limited.database_url, run, ids)
        instances = {n for n, _pid in limited.served(marks, "GET", HEALTH, total=readers)}
        if instances == {0, 1}:
            return
    pytest.fail(f"{ATTEMPTS} rounds of readers never reached both instances")


def _assert_one_stale_event_each(url: str, run: str, ids: list[str]) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            events = dict(conn.execute(
                text("SELECT daemon_id, count(*) FROM daemon_events WHERE kind = 'stale' "
                     "AND daemon_id LIKE :run GROUP BY daemon_id"),
                {"run": f"deploy-{run}-%"},
            ).all())
            left = conn.execute(text("SELECT count(*) FROM daemons WHERE daemon_id LIKE :run"),
                                {"run": f"deploy-{run}-%"}).scalar_one()
    finally:
        engine.dispose()
    assert events == {d: 1 for d in ids}
    assert left == 0


# ----------------------------------------------------------------- 5. body limits


def _raw_exchange(port: int, payload: bytes, *, source: str, timeout: float = 10) -> bytes:
    """Send ``payload`` as is, then read until the server closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # nginx may answer 413 and close before the whole body is sent
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def _post_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"X-API-Key: {ADMIN_KEY}",
             "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _padded_registration(daemon_id: str, size: int) -> bytes:
    """A valid registration of exactly ``size`` bytes (unknown fields are ignored)."""
    body = registration(daemonId=daemon_id, padding="")
    base = len(json.dumps(body).encode())
    body["padding"] = "x" * (size - base)
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def test_body_limit_matches_the_service_and_oversized_bodies_stop_at_nginx(limited):
    run = uuid.uuid4().hex[:8]
    before = limited.marks()
    # Exactly the limit: passes nginx and the service.
    at_limit = request(limited.port, "POST", REGISTER, api_key=ADMIN_KEY, source="127.0.3.1",
                       raw_body=_padded_registration(f"deploy-{run}-max", BODY_LIMIT),
                       headers={"Content-Type": "application/json"})
    assert at_limit.status == 201, at_limit.body[:300]
    limited.served(before, "POST", REGISTER, total=1)  # its log line is written: count from here

    marks = limited.marks()
    # One byte more, declared up front: nginx answers 413 without reading it.
    over = request(limited.port, "POST", REGISTER, api_key=ADMIN_KEY, source="127.0.3.2",
                   raw_body=_padded_registration(f"deploy-{run}-over", BODY_LIMIT + 1),
                   headers={"Content-Type": "application/json"})
    assert over.status == 413, over.body[:300]
    # Chunked, no length given: nginx counts while reading and stops it too.
    chunk = b"x" * 8192
    chunked = _raw_exchange(
        limited.port,
        _post_head(REGISTER, {"Transfer-Encoding": "chunked", "Connection": "close"})
        + (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 12 + b"0\r\n\r\n",
        source="127.0.3.3",
    )
    assert chunked.startswith(b"HTTP/1.1 413 "), chunked[:200]
    # Neither reached gunicorn.
    time.sleep(0.2)
    assert limited.lines_since(marks, "POST", REGISTER) == 0


def test_oversized_body_answer_is_json_like_every_other_error(limited):
    over = request(limited.port, "POST", REGISTER, api_key=ADMIN_KEY, source="127.0.3.4",
                   raw_body=b"{" + b" " * BODY_LIMIT + b"}",
                   headers={"Content-Type": "application/json"})
    assert over.status == 413
    assert over.content_type.startswith("application/json"), (
        f"413 from nginx is {over.content_type}: {over.body[:120]!r}")
    assert isinstance(over.json().get("error"), str)


def test_stalled_clients_are_cut_off_and_hold_no_worker(limited):
    """More stalled clients than there are gunicorn workers; the service still answers."""
    marks = limited.marks()
    stalled: list[tuple[socket.socket, float, str]] = []
    try:
        for n in range(6):  # body promised, 10 of 1000 bytes sent, then silence
            sock = socket.create_connection(("127.0.0.1", limited.port), timeout=10,
                                            source_address=(f"127.0.4.{n + 1}", 0))
            sock.sendall(_post_head(REGISTER, {"Content-Length": "1000"}) + b'{"daemonId')
            stalled.append((sock, time.monotonic(), "body"))
        for n in range(2):  # headers begun, never finished
            sock = socket.create_connection(("127.0.0.1", limited.port), timeout=10,
                                            source_address=(f"127.0.5.{n + 1}", 0))
            sock.sendall(b"POST /api/daemon/register HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            stalled.append((sock, time.monotonic(), "header"))

        # All 4 workers are free: nginx holds the stalled bodies, gunicorn never sees them.
        normal = concurrently([lambda n=n: _health(limited, f"127.0.6.{n + 1}") for n in range(4)],
                              threads=4)
        assert [r.status for r in normal] == [200] * 4
        assert max(r.elapsed for r in normal) < 2, [r.elapsed for r in normal]

        for sock, sent_at, kind in stalled:
            received = b""
            while True:
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
            waited = time.monotonic() - sent_at
            # Closed by nginx once its timeout ran out (socket timeout 10 s bounds the wait).
            assert TEST_CLIENT_TIMEOUT - 0.5 <= waited <= TEST_CLIENT_TIMEOUT + 3, (kind, waited)
            assert received == b"" or received.startswith(b"HTTP/1.1 408"), (kind, received[:200])
    finally:
        for sock, _sent_at, _kind in stalled:
            sock.close()
    assert limited.lines_since(marks, "POST", REGISTER) == 0
    log = limited.nginx.errors()
    assert "client timed out" in log, log[-2000:]


# ------------------------------------------------------------- 4. sustained load


def test_no_server_errors_under_sustained_load(unlimited):
    """~10 s of heartbeats (4 threads, 3 daemons each) and health reads (2 threads) via nginx."""
    run = uuid.uuid4().hex[:8]
    errors_before = len(unlimited.nginx.errors().splitlines())
    marks = unlimited.marks()

    def beater(index: int, stop: threading.Event, record) -> None:
        client = KeepAliveClient(unlimited.port)
        ids = [f"load-{run}-{index}-{n}" for n in range(3)]
        tasks = 0

        def send(kind: str, path: str, body: dict, daemon_id: str) -> Outcome:
            started = time.monotonic()
            try:
                reply = client.send("POST", path, body=body, api_key=ADMIN_KEY)
                outcome = Outcome(kind, started, time.monotonic(), reply.status, reply=reply,
                                  daemon_id=daemon_id)
            except OSError as exc:  # incl. http.client errors: no HTTP answer
                outcome = Outcome(kind, started, time.monotonic(), error=repr(exc),
                                  daemon_id=daemon_id)
            record(outcome)
            return outcome

        try:
            for daemon_id in ids:
                send("register", REGISTER, registration(daemonId=daemon_id), daemon_id)
            while not stop.is_set():
                for daemon_id in ids:
                    tasks += 1
                    beat = send("heartbeat", HEARTBEAT,
                                heartbeat_body(daemonId=daemon_id, tasksProcessed=tasks), daemon_id)
                    if beat.status == 404:  # by design: expired, register again
                        send("register", REGISTER, registration(daemonId=daemon_id), daemon_id)
        finally:
            client.close()

    def reader(_index: int, stop: threading.Event, record) -> None:
        client = KeepAliveClient(unlimited.port)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    reply = client.send("GET", HEALTH, api_key=ADMIN_KEY)
                    record(Outcome("health", started, time.monotonic(), reply.status, reply=reply))
                except OSError as exc:
                    record(Outcome("health", started, time.monotonic(), error=repr(exc)))
        finally:
            client.close()

    started = time.monotonic()
    with LoadThreads(4, beater) as beaters, LoadThreads(2, reader) as readers:
        threading.Event().wait(LOAD_SECONDS)
    elapsed = time.monotonic() - started
    outcomes = beaters.snapshot() + readers.snapshot()

    statuses = Counter((o.kind, o.status if o.error is None else o.error) for o in outcomes)
    bad = [o for o in outcomes if o.error is not None or o.status >= 500
           or (o.kind, o.status) not in {("register", 201), ("heartbeat", 200),
                                         ("heartbeat", 404), ("health", 200)}]
    assert not bad, (statuses, [(o.kind, o.status, o.error, o.reply and o.reply.body[:200])
                                for o in bad[:5]], unlimited.output())
    for o in outcomes:
        if o.kind == "heartbeat" and o.status == 404:
            assert o.reply.json() == {"error": "Daemon not registered", "reason": "expired"}
    total = len(outcomes)
    assert total >= 300, f"only {total} requests in {elapsed:.1f}s: not a sustained load"
    slowest = max(o.ended - o.started for o in outcomes)
    assert slowest < 5, f"slowest request took {slowest:.1f}s"
    # Both instances carried it, and nginx logged nothing worse than info.
    served = unlimited.served(marks, "POST", HEARTBEAT, total=statuses[("heartbeat", 200)]
                              + statuses[("heartbeat", 404)])
    assert {n for n, _ in served} == {0, 1}
    new_errors = [line for line in unlimited.nginx.errors().splitlines()[errors_before:]
                  if any(f"[{level}]" in line for level in ("error", "crit", "alert", "emerg"))]
    assert not new_errors, new_errors[:5]
    print(f"\nload: {total} requests in {elapsed:.1f}s ({total / elapsed:.0f}/s), "
          f"slowest {slowest * 1000:.0f} ms, {dict(statuses)}")


# ------------------------------------------------- rolling restart of one instance


def test_rolling_restart_of_one_instance_loses_no_request(tmp_path, migrated_postgres_url,
                                                          shared_redis):
    run = uuid.uuid4().hex[:8]
    with deployed(tmp_path, migrated_postgres_url, ADMIN_RATE_LIMIT="1000000 per minute",
                  DATABASE_TIMEOUT_SECONDS="5") as deployment:
        stopping, staying = deployment.instances
        engine = create_engine(deployment.database_url)
        try:
            with engine.connect() as locker, engine.connect() as watcher, \
                    ThreadPoolExecutor(max_workers=10) as pool:
                # A table lock holds every registration inside its worker, so the
                # 10 sent now fill all 4 workers and queue the rest in the listen
                # backlogs (nginx round-robins: 5 per instance).
                locker.execute(text("LOCK TABLE daemons IN EXCLUSIVE MODE"))
                futures = [pool.submit(request, deployment.port, "POST", REGISTER,
                                       body=registration(daemonId=f"roll-{run}-{n}"),
                                       api_key=ADMIN_KEY, timeout=30) for n in range(10)]
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and (
                    _lock_waiters(watcher) < 4
                    or established_to(stopping.port) + established_to(staying.port) < 10
                ):
                    time.sleep(0.02)
                queued = established_to(stopping.port)
                assert queued >= 3, f"{queued} connections on the instance to stop"
                stopping.process.send_signal(signal.SIGTERM)  # as a deploy script would
                threading.Event().wait(0.5)
                locker.rollback()
                replies = [future.result(timeout=40) for future in futures]
            assert stopping.process.wait(timeout=25) == 0
        finally:
            engine.dispose()
        statuses = Counter(r.status for r in replies)
        assert statuses.keys() <= {201, 502}, statuses
        # Whatever the client was told, nothing is half-written: the rows are the 201s.
        engine = create_engine(deployment.database_url)
        try:
            with engine.connect() as conn:
                rows = {r for (r,) in conn.execute(
                    text("SELECT daemon_id FROM daemons WHERE daemon_id LIKE :r"),
                    {"r": f"roll-{run}-%"})}
        finally:
            engine.dispose()
        created = {f"roll-{run}-{n}" for n, r in enumerate(replies) if r.status == 201}
        assert rows == created
        assert not statuses[502], (f"{statuses[502]} of 10 registrations got nginx's 502 while "
                                   f"one instance stopped gracefully ({dict(statuses)})")


def _lock_waiters(conn) -> int:
    count = conn.execute(text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'")).scalar_one()
    conn.rollback()  # pg_stat_activity is a snapshot per transaction
    return count
