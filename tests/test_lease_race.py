"""Racing acquirers across real gunicorn workers and instances: exactly one wins each lease.

Many daemons ask for one free lease at the same moment, through two service
instances (as on two hosts) of two sync workers each, every worker a process
with its own database connections, on Postgres and on SQLite: one 200, every
other answer 409 naming the winner. Then the winner deregisters and the rest
race again: one new holder, with the next token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.api import registration
from tests.support.gunicorn_servers import Gunicorn, start_service
from tests.support.http_client import concurrently, request
from tests.support.postgres import migrate

ADMIN_KEY = "lease-race-admin-key-0123"
INSTANCES = 2
WORKERS = 2
RACERS = 24
ROUNDS = 4


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def servers(request, tmp_path_factory) -> Iterator[list[Gunicorn]]:
    """Two service instances on one database per backend, for the whole module."""
    if request.param == "postgresql":
        url = request.getfixturevalue("migrated_postgres_url")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('lease-race') / 'race.db'}"
        migrate(url)
    started: list[Gunicorn] = []
    try:
        for _ in range(INSTANCES):
            started.append(start_service(
                tmp_path_factory.mktemp("lease-race-server"), workers=WORKERS,
                ADMIN_API_KEY=ADMIN_KEY, DATABASE_URL=url, ADMIN_RATE_LIMIT="1000000 per minute",
            ))
        yield started
    finally:
        for server in started:
            server.stop()


def _call(server: Gunicorn, method: str, path: str, body=None):
    return request(server.port, method, path, body=body, api_key=ADMIN_KEY, timeout=30)


def _race(servers: list[Gunicorn], lease: str, racers: list[str]):
    """Every racer asks for ``lease`` at once, alternately through each instance."""
    path = f"/api/leases/{lease}"
    calls = [
        lambda d=d, server=servers[i % len(servers)]: _call(server, "POST", path, {"daemonId": d})
        for i, d in enumerate(racers)
    ]
    return path, dict(zip(racers, concurrently(calls, threads=len(racers))))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_exactly_one_of_many_racing_acquirers_wins(servers, round_):
    racers = [f"racer_{round_}_{i}" for i in range(RACERS)]
    for daemon_id in racers:
        registered = _call(servers[0], "POST", "/api/daemon/register", registration(daemonId=daemon_id))
        assert registered.status == 201
    marks = [server.log_mark() for server in servers]
    path, replies = _race(servers, f"race-{round_}", racers)

    winners = [d for d, reply in replies.items() if reply.status == 200]
    assert len(winners) == 1, {d: (r.status, r.body[:200]) for d, r in replies.items()}
    winner = winners[0]
    assert replies[winner].json()["token"] == 1
    for daemon_id, reply in replies.items():
        if daemon_id != winner:
            assert reply.status == 409, reply.body
            assert reply.json()["holder"] == winner
    # Both instances answered, and their workers between them: not one process in turn.
    pids = set()
    for server, mark in zip(servers, marks):
        pids |= server.served_by("POST", path, count=RACERS // INSTANCES, since=mark)
    assert len(pids) > INSTANCES

    # The holder leaves; the others race for it again: one new holder, the next token.
    assert _call(servers[1], "DELETE", f"/api/daemon/{winner}").status == 200
    rest = [d for d in racers if d != winner]
    _, again = _race(servers, f"race-{round_}", rest)
    second = [d for d, reply in again.items() if reply.status == 200]
    assert len(second) == 1, {d: (r.status, r.body[:200]) for d, r in again.items()}
    assert again[second[0]].json()["token"] == 2
    assert all(r.status == 409 for d, r in again.items() if d != second[0])
