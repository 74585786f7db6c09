"""The service as deployed: real gunicorn, two sync workers, real Postgres and Redis.

Unit tests drive one app in one process; these check what only appears with
several worker processes: a rate limit they share, a stale report delivered
once however the workers race, a dead database answered fast, a start refused
without an admin key.

Which worker answers is up to the kernel. The access log (with the worker's
pid added) shows which did; a scenario whose requests all happened to land on
one worker proves nothing about sharing, so it is run again, a bounded number
of times. Its own assertions hold on every attempt.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.api import heartbeat_body, registration
from tests.support.gunicorn_servers import Gunicorn, spawn_gunicorn
from tests.support.http_client import Reply, concurrently, request
from tests.support.processes import free_port, service_env

ADMIN_KEY = "mw-admin-key-0123456789"
HEALTH = "/api/daemon/health"
REQUESTS = 30
LIMIT = 10
ATTEMPTS = 3  # runs of a scenario until its requests reached both workers


def _assert_retry_after(reply: Reply, *, at_most: int) -> None:
    value = reply.headers.get("Retry-After")
    assert value is not None and value.isdigit(), f"Retry-After must be whole seconds: {value!r}"
    assert 1 <= int(value) <= at_most


def _assert_error_json(reply: Reply) -> None:
    assert reply.content_type == "application/json", (reply.content_type, reply.body[:300])
    assert b"<html" not in reply.body.lower()
    body = reply.json()
    assert isinstance(body.get("error"), str) and body["error"], body


def _burst_on_both_workers(
    start: Callable[[str], Gunicorn], check: Callable[[list[Reply]], None]
) -> tuple[Gunicorn, list[Reply]]:
    """Start a server, send REQUESTS health reads, ``check`` them; until both workers served.

    Four at a time, each on a connection of its own, so while one sync worker
    is busy the other has to accept.
    """
    for attempt in range(ATTEMPTS):
        server = start(f"attempt{attempt}")
        replies = concurrently(
            [lambda: request(server.port, "GET", HEALTH, api_key=ADMIN_KEY)] * REQUESTS, threads=4
        )
        check(replies)
        if len(server.served_by("GET", HEALTH, count=REQUESTS)) == 2:
            return server, replies
        server.stop()
    pytest.fail(f"{ATTEMPTS} bursts of {REQUESTS} requests each reached only one worker")


def test_rate_limit_is_shared_across_gunicorn_workers_with_redis(
    start_gunicorn, migrated_postgres_url, redis_url, key_prefix
):
    common = {
        "ADMIN_API_KEY": ADMIN_KEY,
        "DATABASE_URL": migrated_postgres_url,
        "ADMIN_RATE_LIMIT": f"{LIMIT} per minute",
    }

    def exactly_the_limit(replies: list[Reply]) -> None:
        assert Counter(r.status for r in replies) == {200: LIMIT, 429: REQUESTS - LIMIT}
        for reply in replies:
            if reply.status == 429:
                _assert_error_json(reply)
                # Whole seconds, rounded up once: at most the window (60 s) + 1.
                _assert_retry_after(reply, at_most=61)
            else:
                assert "Retry-After" not in reply.headers

    # Each attempt gets a prefix of its own: a fresh count in Redis.
    shared, _ = _burst_on_both_workers(
        lambda attempt: start_gunicorn(
            **common, RATELIMIT_STORAGE_URI=redis_url,
            RATELIMIT_KEY_PREFIX=f"{key_prefix}-{attempt}",
        ),
        exactly_the_limit,
    )
    assert "each worker counts on its own" not in shared.stderr()
    shared.stop()

    # Control: with per-process counters the same burst, on both workers, lets
    # more than the limit through. So the exact 10 above is Redis sharing the
    # count, not one worker happening to serve everything.
    def within_two_separate_limits(replies: list[Reply]) -> None:
        assert {r.status for r in replies} <= {200, 429}
        assert sum(r.status == 200 for r in replies) <= 2 * LIMIT

    separate, replies = _burst_on_both_workers(
        lambda attempt: start_gunicorn(
            **common, RATELIMIT_STORAGE_URI="memory://",
            RATELIMIT_KEY_PREFIX=f"{key_prefix}-memory-{attempt}",
        ),
        within_two_separate_limits,
    )
    assert sum(r.status == 200 for r in replies) > LIMIT
    assert "each worker counts on its own" in separate.stderr()


def test_stale_daemon_reported_once_across_workers(start_gunicorn, migrated_postgres_url):
    server = start_gunicorn(
        ADMIN_API_KEY=ADMIN_KEY,
        DATABASE_URL=migrated_postgres_url,
        DAEMON_TTL_SECONDS="1",
        ADMIN_RATE_LIMIT="100000 per minute",
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_KEY_PREFIX=f"mw-test-{uuid.uuid4().hex}",
    )
    readers = 16
    for _attempt in range(ATTEMPTS):
        run = uuid.uuid4().hex[:8]
        ids = [f"mw-{run}-{n:02d}" for n in range(20)]
        registered = concurrently(
            [lambda d=d: request(server.port, "POST", "/api/daemon/register",
                                 body=registration(daemonId=d), api_key=ADMIN_KEY) for d in ids],
            threads=4,
        )
        assert [r.status for r in registered] == [201] * len(ids), [r.body for r in registered]

        # Real time, real processes: let the 1 s TTL run out, with margin.
        threading.Event().wait(1.5)

        mark = server.log_mark()
        barrier = threading.Barrier(readers, timeout=10)

        def read() -> Reply:
            barrier.wait()
            return request(server.port, "GET", HEALTH, api_key=ADMIN_KEY)

        replies = concurrently([read] * readers, threads=readers)
        assert [r.status for r in replies] == [200] * readers, [r.body for r in replies]
        bodies = [r.json() for r in replies]
        reported = Counter(d["daemonId"] for body in bodies for d in body["stale"])
        # Exactly these 20 (earlier rounds left nothing behind), each exactly once.
        assert reported == Counter(ids)
        assert not {d["daemonId"] for body in bodies for d in body["activeDaemons"]} & set(ids)
        _assert_one_stale_event_each(migrated_postgres_url, run, ids)
        if len(server.served_by("GET", HEALTH, count=readers, since=mark)) == 2:
            return
    pytest.fail(f"{ATTEMPTS} rounds of {readers} concurrent readers reached only one worker")


def _assert_one_stale_event_each(url: str, run: str, ids: list[str]) -> None:
    """History agrees: one stale event per daemon, and none left in the registry."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            events = conn.execute(
                text("SELECT daemon_id, count(*) FROM daemon_events "
                     "WHERE kind = 'stale' AND daemon_id LIKE :run GROUP BY daemon_id"),
                {"run": f"mw-{run}-%"},
            ).all()
            left = conn.execute(
                text("SELECT count(*) FROM daemons WHERE daemon_id LIKE :run"),
                {"run": f"mw-{run}-%"},
            ).scalar_one()
    finally:
        engine.dispose()
    assert dict(events) == {d: 1 for d in ids}
    assert left == 0


def test_database_unreachable_gives_fast_503(start_gunicorn):
    server = start_gunicorn(
        ADMIN_API_KEY=ADMIN_KEY,
        # Port 1 on loopback: nothing listens, the connection is refused.
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/test",
        DATABASE_TIMEOUT_SECONDS="2",
        ADMIN_RATE_LIMIT="100000 per minute",
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_KEY_PREFIX=f"mw-test-{uuid.uuid4().hex}",
    )
    calls = [lambda: request(server.port, "GET", HEALTH, api_key=ADMIN_KEY)] * 4 + [
        lambda: request(server.port, "POST", "/api/daemon/heartbeat",
                        body=heartbeat_body(), api_key=ADMIN_KEY),
        lambda: request(server.port, "POST", "/api/daemon/register",
                        body=registration(), api_key=ADMIN_KEY),
    ]
    for reply in concurrently(calls, threads=2):
        assert reply.status == 503, (reply.status, reply.body, server.output())
        assert reply.elapsed < 5, f"took {reply.elapsed:.1f}s"
        _assert_error_json(reply)
        assert set(reply.json()) == {"error"}
        _assert_retry_after(reply, at_most=60)


@pytest.mark.parametrize("admin_key", [None, "", " , "], ids=["unset", "empty", "blank"])
def test_production_start_without_admin_key_refuses(tmp_path: Path, admin_key):
    env = service_env(
        WEB_CONCURRENCY="2",
        DATABASE_URL=f"sqlite:///{tmp_path / 'unused.db'}",
        RATELIMIT_STORAGE_URI="memory://",
    )
    if admin_key is not None:
        env["ADMIN_API_KEY"] = admin_key
    server = spawn_gunicorn(tmp_path / "gunicorn", env, port=free_port())
    try:
        try:
            code = server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn still running without ADMIN_API_KEY after 15s\n{server.output()}")
        assert code != 0, server.output()
        assert "ADMIN_API_KEY" in server.stderr(), server.output()
    finally:
        server.stop()


def test_request_metrics_add_up_across_workers(start_gunicorn, migrated_postgres_url):
    from prometheus_client.parser import text_string_to_metric_families

    server = start_gunicorn(
        ADMIN_API_KEY=ADMIN_KEY,
        DATABASE_URL=migrated_postgres_url,
        ADMIN_RATE_LIMIT="100000 per minute",
        RATELIMIT_STORAGE_URI="memory://",
    )

    def health_count() -> float:
        reply = request(server.port, "GET", "/metrics", api_key=ADMIN_KEY)
        assert reply.status == 200, reply.body[:300]
        for family in text_string_to_metric_families(reply.body.decode()):
            for sample in family.samples:
                if sample.name == "daemon_health_http_requests_total" and sample.labels == {
                    "endpoint": HEALTH, "method": "GET", "status": "200"
                }:
                    return sample.value
        return 0.0

    mark = server.log_mark()
    replies = concurrently([lambda: request(server.port, "GET", HEALTH, api_key=ADMIN_KEY)] * REQUESTS, threads=4)
    assert {r.status for r in replies} == {200}
    workers = server.served_by("GET", HEALTH, count=REQUESTS, since=mark)
    # Whichever worker answers each scrape, the count is the sum over all workers.
    scrapes = [health_count() for _ in range(6)]
    assert scrapes == [REQUESTS] * 6, (scrapes, workers)
