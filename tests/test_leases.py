"""Leader leases over the API, on SQLite and Postgres, with a moved clock: a lease lives exactly
as long as its holder's session, and its fencing token grows with every hand-over."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from app import create_app
from app.alerts import watcher
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from app.http.context import database
from app.models import lease_holds
from app.registry import service
from config import Settings
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration
from tests.support.app_fixtures import wipe_tables
from tests.support.clocks import FrozenClock

README = Path(__file__).resolve().parent.parent / "README.md"

TTL = 60  # DAEMON_TTL_SECONDS' default, which the app fixture uses
A, B = "daemon_a", "daemon_b"


@pytest.fixture
def acquire(client):
    def post(daemon_id: str, name: str = "cron", **kwargs):
        return client.post(f"/api/leases/{name}", json={"daemonId": daemon_id}, headers=HEADERS, **kwargs)

    return post


@pytest.fixture
def release(client):
    def delete(daemon_id: str, name: str = "cron"):
        return client.delete(f"/api/leases/{name}?daemonId={daemon_id}", headers=HEADERS)

    return delete


@pytest.fixture
def two_daemons(make_daemon):
    make_daemon(daemonId=A)
    make_daemon(daemonId=B)


def _token(response) -> int:
    assert response.status_code == 200, response.get_json()
    return response.get_json()["token"]


def _holds(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(lease_holds.c.holder, lease_holds.c.token, lease_holds.c.acquired_at,
                   lease_holds.c.ended_at, lease_holds.c.end_reason).order_by(lease_holds.c.id)
        ).all()
    return [tuple(row) for row in rows]


def test_a_free_lease_is_acquired_until_the_holders_expiry(two_daemons, acquire, clock):
    clock.advance(5)
    response = acquire(A)
    assert response.status_code == 200
    assert response.get_json() == {
        "name": "cron",
        "holder": A,
        "token": 1,
        "acquiredAt": "2026-01-25T12:00:05Z",
        "expiresAt": "2026-01-25T12:01:00Z",  # A's registration + TTL
    }


def test_acquiring_again_in_the_same_session_changes_nothing(two_daemons, acquire, clock):
    first = acquire(A).get_json()
    clock.advance(10)
    assert acquire(A).get_json() == first


def test_another_daemon_gets_409_naming_the_holder(two_daemons, acquire):
    acquire(A)
    response = acquire(B)
    assert response.status_code == 409
    assert response.get_json() == {"error": "Lease held", "holder": A, "expiresAt": "2026-01-25T12:01:00Z"}


def test_an_unknown_daemon_gets_404_and_leaves_no_lease(acquire, client):
    response = acquire("daemon_nobody")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Daemon not registered"}
    assert client.get("/api/leases", headers=HEADERS).get_json() == {"leases": []}


def test_an_expired_daemon_gets_404(two_daemons, acquire, clock):
    clock.advance(TTL + 1)
    assert acquire(A).status_code == 404


def test_heartbeats_keep_the_lease(two_daemons, acquire, beat, clock):
    token = _token(acquire(A))
    for _ in range(5):  # well past one TTL in all
        clock.advance(TTL - 10)
        assert beat(A).status_code == 200
        assert beat(B).status_code == 200
        held = acquire(B)
        assert held.status_code == 409
        assert held.get_json()["expiresAt"] == acquire(A).get_json()["expiresAt"]
    assert _token(acquire(A)) == token


def test_the_lease_is_lost_the_moment_the_holder_goes_stale(two_daemons, acquire, beat, clock):
    acquire(A)
    clock.advance(30)
    beat(B)
    clock.advance(TTL - 30)  # A's last instant: still held
    assert acquire(B).status_code == 409
    clock.advance(0.001)
    assert _token(acquire(B)) == 2
    assert acquire(A).status_code == 404  # and A, stale, cannot take it back


def test_the_lease_is_lost_on_deregistration(two_daemons, acquire, client):
    acquire(A)
    assert client.delete(f"/api/daemon/{A}", headers=HEADERS).status_code == 200
    assert _token(acquire(B)) == 2


def test_a_new_session_never_inherits_the_lease(two_daemons, acquire, make_daemon):
    assert _token(acquire(A)) == 1
    make_daemon(daemonId=A)  # registers again at the very same instant: a new session
    assert _token(acquire(A)) == 2


def test_registering_again_frees_the_lease_for_others(two_daemons, acquire, make_daemon):
    acquire(A)
    make_daemon(daemonId=A)
    assert _token(acquire(B)) == 2
    assert acquire(A).status_code == 409


def test_tokens_strictly_increase_across_hand_overs(two_daemons, acquire, release, make_daemon, beat, clock):
    tokens = [_token(acquire(A))]
    assert release(A).status_code == 204
    tokens.append(_token(acquire(A)))  # released and taken again: a hand-over too
    make_daemon(daemonId=A)
    tokens.append(_token(acquire(B)))
    clock.advance(TTL + 1)  # both lapse
    make_daemon(daemonId=A)
    tokens.append(_token(acquire(A)))
    assert tokens == [1, 2, 3, 4]
    # Tokens are per lease name.
    assert _token(acquire(A, name="other")) == 1


def test_release_by_the_holder_frees_the_lease(two_daemons, acquire, release, client):
    acquire(A)
    response = release(A)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert client.get("/api/leases", headers=HEADERS).get_json() == {
        "leases": [{"name": "cron", "holder": None, "token": 1, "acquiredAt": None, "expiresAt": None}]
    }
    assert _token(acquire(B)) == 2


@pytest.mark.parametrize(
    ("setup", "who", "status", "body"),
    [
        ("held_by_a", B, 409, {"error": "Lease held", "holder": A, "expiresAt": "2026-01-25T12:01:00Z"}),
        ("none", A, 404, {"error": "Lease not held"}),
        ("released", A, 404, {"error": "Lease not held"}),
        ("held_by_a", "daemon_nobody", 404, {"error": "Daemon not registered"}),
    ],
)
def test_release_answers(two_daemons, acquire, release, setup, who, status, body):
    if setup in ("held_by_a", "released"):
        acquire(A)
    if setup == "released":
        release(A)
    response = release(who)
    assert (response.status_code, response.get_json()) == (status, body)


def test_release_of_a_lapsed_lease_is_404(two_daemons, acquire, release, make_daemon):
    acquire(A)
    make_daemon(daemonId=A)  # the session that held it is over
    assert release(A).get_json() == {"error": "Lease not held"}


def test_list_shows_holders_and_free_leases(two_daemons, acquire, clock, client):
    acquire(A, name="cron")
    acquire(B, name="mailer")
    clock.advance(TTL - 1)
    client.post("/api/daemon/heartbeat", json={
        "daemonId": A, "status": "healthy", "tasksProcessed": 0, "lastHeartbeat": "2026-01-25T12:00:59Z",
    }, headers=HEADERS)
    clock.advance(2)  # B lapsed, A beat
    assert client.get("/api/leases", headers=HEADERS).get_json() == {
        "leases": [
            {"name": "cron", "holder": A, "token": 1, "acquiredAt": "2026-01-25T12:00:00Z",
             "expiresAt": "2026-01-25T12:01:59Z"},
            {"name": "mailer", "holder": None, "token": 1, "acquiredAt": None, "expiresAt": None},
        ]
    }


@pytest.mark.parametrize("name", ["-cron", "cr on", "a" * 129, "cron%0A", "a/b", "caf%C3%A9"])
def test_lease_names_follow_the_daemon_id_rules(two_daemons, acquire, release, name):
    for response in (acquire(A, name=name), release(A, name=name)):
        assert response.status_code == 400
        assert "letters, digits" in response.get_json()["details"]["name"]


def test_bad_requests_are_400_naming_the_problem(two_daemons, client):
    missing = client.delete("/api/leases/cron", headers=HEADERS)
    assert (missing.status_code, missing.get_json()["details"]) == (400, {"daemonId": "is required"})
    bad_body = client.post("/api/leases/cron", json={"daemonId": 7}, headers=HEADERS)
    assert (bad_body.status_code, bad_body.get_json()["details"]) == (400, {"daemonId": "must be a string"})
    not_json = client.post("/api/leases/cron", data="daemonId=a", headers=HEADERS)
    assert not_json.status_code == 415


def test_history_records_each_hold_and_how_it_ended(two_daemons, acquire, release, make_daemon, client, clock, engine):
    start = clock.now()
    acquire(A)                                       # token 1
    clock.advance(1)
    release(A)                                       # ... released
    acquire(B)                                       # token 2
    clock.advance(1)
    client.delete(f"/api/daemon/{B}", headers=HEADERS)  # ... deregistered
    acquire(A)                                       # token 3
    clock.advance(1)
    make_daemon(daemonId=A)                          # ... registered again
    acquire(A)                                       # token 4: that new session
    clock.advance(TTL + 5)
    with engine.connect() as conn:                   # the watcher's expiry record
        assert service.record_expiries(conn, now=clock.now()) == [A]
    def s(seconds: int):
        return start + timedelta(seconds=seconds)

    assert _holds(engine) == [
        (A, 1, s(0), s(1), "released"),
        (B, 2, s(1), s(2), "deregistered"),
        (A, 3, s(2), s(3), "reregistered"),
        (A, 4, s(3), s(3 + TTL), "stale"),  # ends where its TTL ran out, not when noticed
    ]


def test_a_hold_lost_unnoticed_ends_at_the_holders_expiry_when_taken_over(two_daemons, acquire, beat, clock, engine):
    acquire(A)
    clock.advance(30)
    beat(B)
    clock.advance(40)  # A lapsed 10 s ago; no watcher, no /health read
    acquire(B)
    assert [(h[0], h[3], h[4]) for h in _holds(engine)] == [
        (A, clock.now() - timedelta(seconds=10), "stale"),
        (B, None, None),
    ]


def test_health_reaping_the_holder_closes_its_hold(two_daemons, acquire, clock, read_health, engine):
    acquire(A)
    clock.advance(TTL + 1)
    read_health()  # on Postgres, the one-statement reap
    assert [h[4] for h in _holds(engine)] == ["stale"]


def test_the_lease_holders_view_answers_who_held_it(two_daemons, acquire, release, clock, engine):
    acquire(A)
    clock.advance(10)
    release(A)
    acquire(B)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT holder, token, held_until, end_reason FROM lease_holders WHERE name = 'cron' ORDER BY token")
        ).all()
    # An open hold runs to its holder's expiry (B registered at the start: start + TTL).
    assert [(r.holder, r.token, r.end_reason) for r in rows] == [(A, 1, "released"), (B, 2, None)]
    assert rows[1].held_until is not None


def test_daemon_keys_act_only_for_their_own_daemons(app, make_app):
    own, other, reader = "test-daemon-key-lease-own-01", "test-daemon-key-lease-other-2", "test-read-key-lease-000001"
    client = make_app(daemon_api_keys=(own, other), read_api_keys=(reader,)).test_client()
    assert client.post("/api/daemon/register", json=registration(daemonId=A),
                       headers={"X-API-Key": own}).status_code == 201
    refused = client.post("/api/leases/cron", json={"daemonId": A}, headers={"X-API-Key": other})
    assert refused.status_code == 403
    assert "registered with another key" in refused.get_json()["error"]
    assert client.post("/api/leases/cron", json={"daemonId": A}, headers={"X-API-Key": own}).status_code == 200
    assert client.delete(f"/api/leases/cron?daemonId={A}", headers={"X-API-Key": other}).status_code == 403
    assert client.get("/api/leases", headers={"X-API-Key": reader}).get_json()["leases"][0]["holder"] == A
    assert client.post("/api/leases/cron", json={"daemonId": A}, headers={"X-API-Key": reader}).status_code == 403
    assert client.delete(f"/api/leases/cron?daemonId={A}", headers={"X-API-Key": own}).status_code == 204


def test_prune_history_forgets_holds_that_ended_before_the_cut(two_daemons, acquire, release, make_daemon, app,
                                                                clock, engine, read_health):
    acquire(A)
    release(A)                          # ended long ago
    acquire(B)
    clock.advance(10 * 86400)
    read_health()                       # B's lapse is recorded: its hold ends where its TTL ran out
    make_daemon(daemonId=A)
    acquire(A, name="recent")           # still open: kept however the cut falls
    result = app.test_cli_runner().invoke(args=["daemons", "prune-history", "--days", "5"])
    assert result.exit_code == 0, result.output
    assert "Removed 2 lease holds that ended more than 5 days ago." in result.output  # A's, and B's (stale)
    assert [(h[0], h[1], h[4]) for h in _holds(engine)] == [(A, 1, None)]


def _readme_lease_query() -> str:
    section = README.read_text().split("### Who held a lease when", 1)[1].split("\n### ", 1)[0]
    (query,) = re.findall(r"```sql\n(.*?)```", section, re.S)
    return query


def test_the_readmes_who_held_it_query_on_postgres(postgres_database):
    # Tuesday 24 November 2026: A holds the lease from Monday into Tuesday morning and goes
    # silent; B takes over on Tuesday and releases it on Wednesday; A's later hold is not asked.
    clock = FrozenClock(datetime(2026, 11, 23, 22, tzinfo=UTC))
    app = create_app(Settings(database_url=postgres_database, admin_api_keys=(API_KEY,)), clock=clock)
    wipe_tables(database(app).engine)
    client = app.test_client()

    def post(path, body):
        response = client.post(path, json=body, headers=HEADERS)
        assert response.status_code in (200, 201, 204), response.get_json()

    post("/api/daemon/register", registration(daemonId=A))
    post("/api/leases/nightly-report", {"daemonId": A})
    for _ in range(3 * 60 * 3):  # A heartbeats every 20 s until 01:00 on Tuesday
        clock.advance(20)
        post("/api/daemon/heartbeat", heartbeat_body(daemonId=A))
    clock.advance(3600)
    post("/api/daemon/register", registration(daemonId=B))
    post("/api/leases/nightly-report", {"daemonId": B})
    clock.advance(TTL - 1)
    post("/api/daemon/register", registration(daemonId=A))  # A returns; B's session will lapse
    clock.advance(2)
    post("/api/leases/nightly-report", {"daemonId": A})
    try:
        with database(app).engine.connect() as conn:
            rows = conn.execute(text(_readme_lease_query())).all()
    finally:
        database(app).dispose()
    tuesday_one_am = datetime(2026, 11, 24, 1, tzinfo=UTC)
    assert [(r.holder, r.token, r.end_reason) for r in rows] == [(A, 1, "stale"), (B, 2, "stale"), (A, 3, None)]
    assert rows[0].held_until == tuesday_one_am + timedelta(seconds=TTL)  # A's last beat + TTL


def test_sessions_from_before_session_ids_do_not_share_a_lease(two_daemons, acquire, engine):
    # Migration 0011 gives the sessions already running the same session id ''.
    with engine.begin() as conn:
        conn.execute(text("UPDATE daemons SET session_id = ''"))
    assert _token(acquire(A)) == 1
    assert acquire(B).status_code == 409
    assert acquire(A).get_json()["token"] == 1


def test_after_an_outage_of_the_service_the_holder_keeps_its_lease(app, two_daemons, acquire, beat, clock):
    with Lanes() as senders:
        def tick():
            return watcher.tick(watcher_of(app), senders)

        acquire(A)
        tick()  # a watcher runs, so the service notes when it was last seen working
        clock.advance(30)
        beat(A), beat(B)
        tick()
        clock.advance(300)  # the service is down: no tick, no request gets through
        # The first request after it is a lease request: the daemons get their grace first,
        # so the holder keeps the lease (and the asker is not stale either).
        held = acquire(B)
    assert held.status_code == 409
    assert held.get_json()["holder"] == A
