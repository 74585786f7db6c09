"""The specification's three endpoints, line by line, on SQLite and Postgres."""

from __future__ import annotations

from sqlalchemy import func, select

from app.models import daemons
from tests.support.api import HEADERS, heartbeat_body, registration

STATE_FIELDS = [
    "daemonId",
    "version",
    "capabilities",
    "pollInterval",
    "registeredAt",
    "lastHeartbeat",
    "status",
    "tasksProcessed",
    "currentTask",
]


def test_register_returns_201_with_id_and_registered_at_and_the_ttl(client):
    response = client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    assert response.status_code == 201
    # The specification's fields in its order, then ttlSeconds (DAEMON_TTL_SECONDS) beside them.
    assert list(response.get_json().items()) == [
        ("success", True),
        ("daemonId", "daemon_macmini_1"),
        ("registeredAt", "2026-01-25T12:00:00Z"),
        ("ttlSeconds", 60),
    ]


def test_register_answers_the_configured_ttl(make_app):
    client = make_app(daemon_ttl_seconds=90).test_client()
    response = client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    assert response.get_json()["ttlSeconds"] == 90


def test_register_echoes_registered_at_in_utc(client):
    body = registration(registeredAt="2026-01-25T13:00:00.250+01:00")
    response = client.post("/api/daemon/register", json=body, headers=HEADERS)
    assert response.get_json()["registeredAt"] == "2026-01-25T12:00:00.250Z"


def test_register_again_while_live_is_an_upsert(client, make_daemon, read_health, engine):
    make_daemon(version="2.2")
    response = client.post(
        "/api/daemon/register", json=registration(version="2.3", capabilities=["cron"]), headers=HEADERS
    )
    assert response.status_code == 201
    [daemon] = read_health()["activeDaemons"]
    assert daemon["version"] == "2.3"
    assert daemon["capabilities"] == ["cron"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(daemons)).scalar_one() == 1


def test_register_again_resets_heartbeat_state(make_daemon, beat, read_health):
    make_daemon()
    beat(status="degraded", tasksProcessed=7, currentTask="evt_9")
    make_daemon()
    [daemon] = read_health()["activeDaemons"]
    assert (daemon["status"], daemon["tasksProcessed"], daemon["currentTask"]) == ("healthy", 0, None)


def test_register_after_expiry_is_a_fresh_registration(clock, client, make_daemon, beat, read_health):
    make_daemon()
    clock.advance(61)
    response = client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    assert response.status_code == 201
    assert beat().status_code == 200
    health = read_health()
    assert [d["daemonId"] for d in health["activeDaemons"]] == ["daemon_macmini_1"]
    assert health["stale"] == []


def test_registration_counts_as_a_heartbeat(clock, make_daemon, read_health):
    make_daemon()
    clock.advance(60)
    assert read_health()["totalActive"] == 1
    clock.advance(1)
    health = read_health()
    assert health["totalActive"] == 0
    assert [d["daemonId"] for d in health["stale"]] == ["daemon_macmini_1"]


def test_heartbeat_returns_success(make_daemon, beat):
    make_daemon()
    response = beat()
    assert response.status_code == 200
    assert response.get_json() == {"success": True}


def test_heartbeat_for_unknown_daemon_is_404(beat):
    response = beat("never_registered")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Daemon not registered", "reason": "unknown"}


def test_heartbeat_updates_the_reported_state(clock, make_daemon, beat, read_health):
    make_daemon()
    clock.advance(30)
    beat(status="degraded", tasksProcessed=43, currentTask="evt_456")
    [daemon] = read_health()["activeDaemons"]
    assert daemon["status"] == "degraded"
    assert daemon["tasksProcessed"] == 43
    assert daemon["currentTask"] == "evt_456"
    assert daemon["lastHeartbeat"] == "2026-01-25T12:00:30Z"


def test_heartbeat_without_current_task_clears_it(make_daemon, beat, read_health, client):
    make_daemon()
    beat(currentTask="evt_1")
    body = heartbeat_body()
    del body["currentTask"]
    assert client.post("/api/daemon/heartbeat", json=body, headers=HEADERS).status_code == 200
    assert read_health()["activeDaemons"][0]["currentTask"] is None


def test_health_lists_every_daemon_state_field(make_daemon, beat, read_health):
    make_daemon()
    beat()
    health = read_health()
    assert list(health) == ["activeDaemons", "stale", "totalActive"]
    [daemon] = health["activeDaemons"]
    assert list(daemon)[: len(STATE_FIELDS)] == STATE_FIELDS
    assert daemon == {
        "daemonId": "daemon_macmini_1",
        "version": "2.2",
        "capabilities": ["queue", "cron"],
        "pollInterval": 5000,
        "registeredAt": "2026-01-25T12:00:00Z",
        "lastHeartbeat": "2026-01-25T12:00:00Z",
        "status": "healthy",
        "tasksProcessed": 42,
        "currentTask": "evt_123",
        "reportedLastHeartbeat": "2026-01-25T12:05:00Z",
        "region": None,
    }
    assert health["stale"] == []
    assert health["totalActive"] == 1


def test_health_when_empty(read_health):
    assert read_health() == {"activeDaemons": [], "stale": [], "totalActive": 0}


def test_health_lists_daemons_in_id_order(make_daemon, read_health):
    for daemon_id in ["c", "a", "b"]:
        make_daemon(daemonId=daemon_id)
    health = read_health()
    assert [d["daemonId"] for d in health["activeDaemons"]] == ["a", "b", "c"]
    assert health["totalActive"] == 3


def test_get_one_daemon_returns_its_state(client, make_daemon, beat):
    make_daemon()
    beat(status="degraded")
    response = client.get("/api/daemon/daemon_macmini_1", headers=HEADERS)
    assert response.status_code == 200
    assert response.get_json()["status"] == "degraded"
    assert list(response.get_json())[: len(STATE_FIELDS)] == STATE_FIELDS


def test_get_unknown_or_expired_daemon_is_404(clock, client, make_daemon):
    assert client.get("/api/daemon/nobody", headers=HEADERS).status_code == 404
    make_daemon()
    clock.advance(61)
    response = client.get("/api/daemon/daemon_macmini_1", headers=HEADERS)
    assert response.status_code == 404
    assert response.get_json() == {"error": "Daemon not registered"}


def test_deregister_removes_at_once_and_is_never_stale(clock, client, make_daemon, beat, read_health):
    make_daemon()
    response = client.delete("/api/daemon/daemon_macmini_1", headers=HEADERS)
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "daemonId": "daemon_macmini_1"}
    assert read_health() == {"activeDaemons": [], "stale": [], "totalActive": 0}
    clock.advance(3600)
    assert read_health()["stale"] == []
    assert beat().status_code == 404


def test_deregister_unknown_daemon_is_404(client):
    response = client.delete("/api/daemon/nobody", headers=HEADERS)
    assert response.status_code == 404
    assert response.get_json() == {"error": "Daemon not registered"}


def test_deregister_expired_daemon_is_404_and_keeps_stale_report(clock, client, make_daemon, read_health):
    make_daemon()
    clock.advance(61)
    assert client.delete("/api/daemon/daemon_macmini_1", headers=HEADERS).status_code == 404
    assert [d["daemonId"] for d in read_health()["stale"]] == ["daemon_macmini_1"]


def test_one_daemon_endpoints_need_the_key(client, make_daemon):
    make_daemon()
    assert client.get("/api/daemon/daemon_macmini_1").status_code == 401
    assert client.delete("/api/daemon/daemon_macmini_1").status_code == 401


def test_health_renders_timestamps_like_the_rest_of_the_api(clock, client, make_daemon, read_health):
    # On Postgres /health is rendered by the database: it must format exactly alike.
    make_daemon(daemonId="ms", registeredAt="2026-01-25T13:00:00.250+01:00")
    make_daemon(daemonId="us", registeredAt="2026-01-25T12:00:00.250001Z")
    clock.advance(0.5)
    make_daemon(daemonId="whole", registeredAt="0999-01-01T00:00:00Z")
    by_id = {d["daemonId"]: d for d in read_health()["activeDaemons"]}
    assert by_id["ms"]["registeredAt"] == "2026-01-25T12:00:00.250Z"
    assert by_id["us"]["registeredAt"] == "2026-01-25T12:00:00.250001Z"
    assert by_id["whole"]["registeredAt"] == "0999-01-01T00:00:00Z"
    assert by_id["whole"]["lastHeartbeat"] == "2026-01-25T12:00:00.500Z"
    assert by_id["ms"]["lastHeartbeat"] == "2026-01-25T12:00:00Z"
    for daemon_id in by_id:
        single = client.get(f"/api/daemon/{daemon_id}", headers=HEADERS).get_json()
        assert single == by_id[daemon_id]
