"""Regions: where a daemon runs, /health for one region, and GET /api/regions."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app.models import daemon_events
from app.registry import health_postgres, service
from app.registry.schemas import RegistrationIn
from tests.support.api import HEADERS, heartbeat_body, registration
from tests.support.clocks import START
from tests.test_concurrency import _in_parallel

DAEMON_KEY = "test-daemon-key-region-0001"
READ_KEY = "test-read-key-regions-0001"


@pytest.fixture
def regional(app, make_app):
    """An instance whose SERVICE_REGION is eu-west, with daemon and read keys."""
    return make_app(
        service_region="eu-west", daemon_api_keys=(DAEMON_KEY,), read_api_keys=(READ_KEY,)
    ).test_client()


def _register(client, daemon_id, key=None, **fields):
    headers = {"X-API-Key": key} if key else HEADERS
    response = client.post("/api/daemon/register", json=registration(daemonId=daemon_id, **fields),
                           headers=headers)
    assert response.status_code == 201, response.get_json()


def _state(client, daemon_id):
    response = client.get(f"/api/daemon/{daemon_id}", headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _health(client, region=None):
    response = client.get("/api/daemon/health", headers=HEADERS,
                          query_string={"region": region} if region is not None else None)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _ids(states):
    return [state["daemonId"] for state in states]


def _regions(client, key=None):
    response = client.get("/api/regions", headers={"X-API-Key": key} if key else HEADERS)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# ------------------------------------------------------------------ registration


def test_a_registration_names_its_region(client):
    _register(client, "d1", region="us-east-1")
    assert _state(client, "d1")["region"] == "us-east-1"
    assert _health(client)["activeDaemons"][0]["region"] == "us-east-1"
    assert client.get("/api/daemons", headers=HEADERS).get_json()["daemons"][0]["region"] == "us-east-1"


def test_without_a_region_the_instance_region_is_used(regional):
    _register(regional, "absent")
    _register(regional, "null", region=None)
    _register(regional, "own", region="us-east-1")
    assert [_state(regional, d)["region"] for d in ("absent", "null", "own")] == [
        "eu-west", "eu-west", "us-east-1"]


def test_without_a_region_or_service_region_it_is_null(client):
    _register(client, "d1")
    assert _state(client, "d1")["region"] is None


def test_registering_again_moves_the_daemon_to_the_new_region(client):
    _register(client, "d1", region="a")
    _register(client, "d1", region="b")
    assert _state(client, "d1")["region"] == "b"


def test_a_daemon_key_registers_in_a_region(regional):
    _register(regional, "mine", key=DAEMON_KEY, region="ap-south")
    _register(regional, "defaulted", key=DAEMON_KEY)
    response = regional.get("/api/daemon/mine", headers={"X-API-Key": DAEMON_KEY})
    assert response.get_json()["region"] == "ap-south"
    assert _state(regional, "defaulted")["region"] == "eu-west"


def test_the_longest_region_is_accepted(client):
    _register(client, "d1", region="r" * 64)
    assert _state(client, "d1")["region"] == "r" * 64


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("", "must be 1-64 characters"),
        ("eu west", "must be 1-64 characters"),
        ("-eu", "must be 1-64 characters"),
        ("r" * 65, "must be 1-64 characters"),
        ("eu\n", "must be 1-64 characters"),
        ("eu\u0000", "must be 1-64 characters"),
        ("\ud800", "must not contain U+0000 (NUL) or unpaired surrogates"),
        (5, "must be a string"),
        (["eu"], "must be a string"),
    ],
)
def test_a_bad_region_is_a_400_naming_it(client, region, message):
    body = json.dumps(registration(region=region))
    response = client.post("/api/daemon/register", data=body, headers=HEADERS,
                           content_type="application/json")
    assert response.status_code == 400
    assert message in response.get_json()["details"]["region"]
    assert client.get("/api/daemons", headers=HEADERS).get_json()["daemons"] == []


# ------------------------------------------------------------ /health?region=


def _two_regions_gone_stale(client, clock):
    for daemon_id, region in [("a1", "east"), ("a2", "east"), ("b1", "west"), ("c1", None)]:
        _register(client, daemon_id, region=region)
    clock.advance(61)
    _register(client, "a3", region="east")  # live
    _register(client, "b2", region="west")


def test_health_for_a_region_reaps_and_lists_only_that_region(client, clock):
    _two_regions_gone_stale(client, clock)
    east = _health(client, "east")
    assert _ids(east["stale"]) == ["a1", "a2"]
    assert _ids(east["activeDaemons"]) == ["a3"]
    assert east["totalActive"] == 1
    assert all(state["region"] == "east" for state in east["stale"] + east["activeDaemons"])
    # The other regions' stale daemons are still there, for the next reader.
    everyone = _health(client)
    assert _ids(everyone["stale"]) == ["b1", "c1"]
    assert _ids(everyone["activeDaemons"]) == ["a3", "b2"]
    assert _health(client, "east")["stale"] == _health(client)["stale"] == []


def test_health_for_a_region_reports_each_stale_daemon_once(client, clock, engine):
    _two_regions_gone_stale(client, clock)
    assert _ids(_health(client)["stale"]) == ["a1", "a2", "b1", "c1"]
    assert _health(client, "east")["stale"] == []
    assert _health(client, "west")["stale"] == []
    with engine.connect() as conn:
        stale = conn.execute(
            select(daemon_events.c.daemon_id).where(daemon_events.c.kind == "stale")
        ).scalars().all()
    assert sorted(stale) == ["a1", "a2", "b1", "c1"]


def test_health_for_an_unknown_region_is_empty(client, clock):
    _two_regions_gone_stale(client, clock)
    assert _health(client, "nowhere") == {"activeDaemons": [], "stale": [], "totalActive": 0}
    assert len(_health(client)["stale"]) == 4


@pytest.mark.parametrize("region", ["", "eu west", "eu\n", "eu\u0000", "-eu", "r" * 65])
def test_a_bad_region_parameter_is_a_400_naming_it(client, clock, region):
    _two_regions_gone_stale(client, clock)
    response = client.get("/api/daemon/health", headers=HEADERS, query_string={"region": region})
    assert response.status_code == 400
    body = response.get_json()
    assert "must be 1-64 characters" in body["details"]["region"]
    assert "region" in body["error"]
    assert len(_health(client)["stale"]) == 4  # nothing was reaped


def test_a_read_key_may_not_reap_a_region(regional):
    response = regional.get("/api/daemon/health?region=eu-west", headers={"X-API-Key": READ_KEY})
    assert response.status_code == 403


# ---------------------------------------------------------------- /api/regions


def test_regions_count_each_region_without_reaping(client, clock):
    _register(client, "a1", region="east")
    _register(client, "a2", region="east")
    _register(client, "b1", region="west")
    _register(client, "n1")
    clock.advance(61)  # a1, a2, b1 and n1 expire unread
    _register(client, "a3", region="east")
    for daemon_id, region, status in [("a4", "east", "degraded"), ("a5", "east", "unhealthy"),
                                      ("b2", "west", "unhealthy")]:
        _register(client, daemon_id, region=region)
        clock.advance(1)
        client.post("/api/daemon/heartbeat", json=heartbeat_body(daemonId=daemon_id, status=status),
                    headers=HEADERS)
    found = _regions(client)
    assert found == [
        {"region": "east", "active": 3, "stale": 2, "degraded": 1, "unhealthy": 1,
         "disrupted": False, "lastHeartbeat": "2026-01-25T12:01:03Z"},
        {"region": "west", "active": 1, "stale": 1, "degraded": 0, "unhealthy": 1,
         "disrupted": False, "lastHeartbeat": "2026-01-25T12:01:04Z"},
        {"region": None, "active": 0, "stale": 1, "degraded": 0, "unhealthy": 0,
         "disrupted": False, "lastHeartbeat": "2026-01-25T12:00:00Z"},
    ]
    assert _regions(client) == found  # reading reaps nothing
    assert _ids(_health(client, "east")["stale"]) == ["a1", "a2"]
    assert [(r["region"], r["stale"]) for r in _regions(client)] == [
        ("east", 0), ("west", 1), (None, 1)]


def test_regions_of_an_empty_registry(client):
    assert _regions(client) == []


def test_a_read_key_reads_regions_and_a_daemon_key_does_not(regional):
    _register(regional, "d1")
    assert [r["region"] for r in _regions(regional, READ_KEY)] == ["eu-west"]
    response = regional.get("/api/regions", headers={"X-API-Key": DAEMON_KEY})
    assert response.status_code == 403
    assert "a daemon key may only" in response.get_json()["error"]


# -------------------------------------------------------- exactly once, Postgres


def test_filtered_and_unfiltered_readers_report_each_stale_daemon_once(pg_engine):
    """Readers of /health, of one region and of the whole fleet, race on real Postgres."""
    ttl = timedelta(seconds=60)
    with pg_engine.connect() as conn:
        for n in range(240):
            reg = RegistrationIn.model_validate(
                registration(daemonId=f"daemon_{n:04d}", region=("east", "west", "south")[n % 3]))
            service.register(conn, reg, now=START, ttl=ttl)
    later = START + ttl + timedelta(seconds=1)
    filters = [None, "east", "west", "south", None, "east", "west", None]
    readers = iter(filters)

    def read(conn):
        return json.loads(service.health(conn, now=later, region=next(readers)))

    reports = _in_parallel(pg_engine, read, len(filters))
    counts = Counter(d["daemonId"] for report in reports for d in report["stale"])
    assert len(counts) == 240 and set(counts.values()) == {1}
    with pg_engine.connect() as conn:
        stale = conn.execute(
            select(daemon_events.c.daemon_id).where(daemon_events.c.kind == "stale")
        ).scalars().all()
    assert sorted(stale) == sorted(counts)


def test_the_region_filter_reads_the_region_index(pg_engine):
    """/health?region= on 20,000 daemons in 20 regions finds one region's rows by its index."""
    with pg_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO daemons (daemon_id, version, capabilities, poll_interval, registered_at,"
            " session_started_at, last_heartbeat, expires_at, status, tasks_processed, region)"
            " SELECT 'd' || i, '1', '[]'::jsonb, 5000, now(), now(), now(), now() + interval '1 hour',"
            " 'healthy', 0, 'r' || (i % 20) FROM generate_series(1, 20000) i"))
        conn.execute(text("ANALYZE daemons"))
        sql = health_postgres.HEALTH_IN_REGION.text.replace(":now", "now()").replace(":region", "'r3'")
        plan = "\n".join(conn.execute(text("EXPLAIN " + sql)).scalars())
    assert plan.count("ix_daemons_region_expires_at") == 2, plan  # the reaping and the live list
    assert "Seq Scan on daemons" not in plan, plan
