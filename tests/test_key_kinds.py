"""Scoped keys: what each kind may call, daemons owned by the key that registered them,
and rate limits per daemon key rather than per address."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.http.auth import ACCESS, fingerprint
from app.models import daemons
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration

DAEMON_KEY = "test-daemon-key-host-a-0001"
OTHER_DAEMON_KEY = "test-daemon-key-host-b-0002"
READ_KEY = "test-read-key-dashboard-01"
METRICS_KEY = "test-metrics-key-prometheus"

DAEMON_ID = "daemon_macmini_1"
CALLS = {
    "daemons.register": ("post", "/api/daemon/register", registration()),
    "daemons.heartbeat": ("post", "/api/daemon/heartbeat", heartbeat_body()),
    "daemons.get_daemon": ("get", f"/api/daemon/{DAEMON_ID}", None),
    "daemons.deregister": ("delete", f"/api/daemon/{DAEMON_ID}", None),
    "daemons.health": ("get", "/api/daemon/health", None),
    "fleet.list_daemons": ("get", "/api/daemons", None),
    "fleet.daemons_history": ("get", f"/api/daemons/history?ids={DAEMON_ID}", None),
    "fleet.list_events": ("get", "/api/events", None),
    "regions.list_regions": ("get", "/api/regions", None),
    "uptime.fleet_uptime": ("get", "/api/daemon/uptime", None),
    "uptime.daemon_uptime": ("get", f"/api/daemon/{DAEMON_ID}/uptime", None),
    "task_metrics.fleet_metrics": ("get", "/api/daemon/metrics", None),
    "task_metrics.daemon_metrics": ("get", f"/api/daemon/{DAEMON_ID}/metrics", None),
    "metrics.metrics": ("get", "/metrics", None),
    "leases.list_leases": ("get", "/api/leases", None),
    "leases.acquire": ("post", "/api/leases/cron", {"daemonId": DAEMON_ID}),
    "leases.release": ("delete", f"/api/leases/cron?daemonId={DAEMON_ID}", None),
    "maintenance.open_window": (
        "post", "/api/maintenance",
        {"from": "2026-01-25T12:00:00Z", "to": "2026-01-25T13:00:00Z", "reason": "deploy"},
    ),
    "maintenance.list_windows": ("get", "/api/maintenance", None),
    "maintenance.end_window": ("delete", "/api/maintenance/1", None),
}
KEYS = {"admin": API_KEY, "daemon": DAEMON_KEY, "read": READ_KEY, "metrics": METRICS_KEY}
# The contract, written out here rather than read from app.http.auth.ACCESS.
ALLOWED = {
    "admin": set(CALLS),
    "daemon": {
        "daemons.register", "daemons.heartbeat", "daemons.get_daemon", "daemons.deregister",
        "leases.acquire", "leases.release",
    },
    "read": {
        "daemons.get_daemon", "fleet.list_daemons", "fleet.daemons_history", "fleet.list_events",
        "regions.list_regions",
        "uptime.fleet_uptime", "uptime.daemon_uptime", "task_metrics.fleet_metrics",
        "task_metrics.daemon_metrics", "metrics.metrics", "leases.list_leases",
        "maintenance.list_windows",
    },
    "metrics": {"metrics.metrics"},
}
WHAT_IT_MAY_DO = {
    "daemon": "a daemon key may only register (POST /api/daemon/register)",
    "read": "a read key may only read GET /api/daemons",
    "metrics": "a metrics key may only read GET /metrics",
}


@pytest.fixture
def scoped(app, make_app):
    return make_app(
        daemon_api_keys=(DAEMON_KEY, OTHER_DAEMON_KEY),
        read_api_keys=(READ_KEY,),
        metrics_api_keys=(METRICS_KEY,),
    ).test_client()


def _call(client, endpoint, key, **kwargs):
    method, path, body = CALLS[endpoint]
    return getattr(client, method)(path, json=body, headers={"X-API-Key": key}, **kwargs)


def test_the_table_covers_every_keyed_endpoint():
    assert set(ACCESS) == set(CALLS)


@pytest.mark.parametrize("endpoint", sorted(CALLS))
@pytest.mark.parametrize("kind", sorted(KEYS))
def test_each_key_kind_may_call_exactly_its_endpoints(scoped, kind, endpoint):
    # A daemon to act on, registered with the daemon key (so it is that key's own).
    scoped.post("/api/daemon/register", json=registration(), headers={"X-API-Key": DAEMON_KEY})
    response = _call(scoped, endpoint, KEYS[kind])
    if endpoint in ALLOWED[kind]:
        # Past the key check (an uptime question about a daemon born this instant is a 404).
        assert response.status_code not in (401, 403, 429), response.get_data(as_text=True)
    else:
        assert response.status_code == 403
        message = response.get_json()["error"]
        assert message.startswith("This key may not call ")
        assert WHAT_IT_MAY_DO[kind] in message


def test_a_daemon_key_works_end_to_end_on_its_own_daemon(scoped):
    key = {"X-API-Key": DAEMON_KEY}
    assert scoped.post("/api/daemon/register", json=registration(), headers=key).status_code == 201
    assert scoped.post("/api/daemon/heartbeat", json=heartbeat_body(), headers=key).status_code == 200
    changed = heartbeat_body(status="degraded")
    assert scoped.post("/api/daemon/heartbeat", json=changed, headers=key).status_code == 200
    assert scoped.get(f"/api/daemon/{DAEMON_ID}", headers=key).get_json()["status"] == "degraded"
    assert scoped.delete(f"/api/daemon/{DAEMON_ID}", headers=key).status_code == 200
    assert scoped.get(f"/api/daemon/{DAEMON_ID}", headers=key).status_code == 404


@pytest.mark.parametrize("owner", [OTHER_DAEMON_KEY, API_KEY], ids=["another-daemon-key", "admin"])
def test_a_daemon_key_cannot_touch_a_daemon_registered_with_another_key(scoped, read_health, owner):
    scoped.post("/api/daemon/register", json=registration(), headers={"X-API-Key": owner})
    intruder = {"X-API-Key": DAEMON_KEY}
    replies = [
        scoped.post("/api/daemon/heartbeat", json=heartbeat_body(status="unhealthy"), headers=intruder),
        scoped.post("/api/daemon/heartbeat", json=heartbeat_body(), headers=intruder),
        scoped.get(f"/api/daemon/{DAEMON_ID}", headers=intruder),
        scoped.delete(f"/api/daemon/{DAEMON_ID}", headers=intruder),
        # Registering the same id again is no takeover either.
        scoped.post("/api/daemon/register", json=registration(version="evil"), headers=intruder),
    ]
    for reply in replies:
        assert reply.status_code == 403, reply.get_json()
        assert reply.get_json() == {
            "error": f"Daemon {DAEMON_ID!r} is registered with another key; "
            "a daemon key may only act on the daemons registered with it"
        }
    (daemon,) = read_health()["activeDaemons"]
    assert daemon["version"] == "2.2" and daemon["status"] == "healthy"


def test_the_admin_key_acts_on_any_daemon(scoped):
    scoped.post("/api/daemon/register", json=registration(), headers={"X-API-Key": DAEMON_KEY})
    assert scoped.post("/api/daemon/heartbeat", json=heartbeat_body(), headers=HEADERS).status_code == 200
    assert scoped.delete(f"/api/daemon/{DAEMON_ID}", headers=HEADERS).status_code == 200


def test_unknown_daemons_are_still_404_for_a_daemon_key(scoped):
    key = {"X-API-Key": DAEMON_KEY}
    body = heartbeat_body(daemonId="nobody")
    assert scoped.post("/api/daemon/heartbeat", json=body, headers=key).status_code == 404
    assert scoped.get("/api/daemon/nobody", headers=key).status_code == 404
    assert scoped.delete("/api/daemon/nobody", headers=key).status_code == 404


def test_a_daemon_gone_from_the_registry_may_be_registered_by_another_key(scoped, clock, read_health):
    scoped.post("/api/daemon/register", json=registration(), headers={"X-API-Key": OTHER_DAEMON_KEY})
    clock.advance(61)
    read_health()  # reaped: stale
    key = {"X-API-Key": DAEMON_KEY}
    assert scoped.post("/api/daemon/register", json=registration(), headers=key).status_code == 201
    assert scoped.post("/api/daemon/heartbeat", json=heartbeat_body(), headers=key).status_code == 200


def test_the_row_keeps_the_keys_fingerprint_never_the_key(scoped, engine):
    scoped.post("/api/daemon/register", json=registration(), headers={"X-API-Key": DAEMON_KEY})
    scoped.post("/api/daemon/register", json=registration(daemonId="by_admin"), headers=HEADERS)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(daemons.c.daemon_id, daemons.c.owner_key_fingerprint)).all())
        everything = str(conn.execute(select(daemons)).all())
    assert rows == {DAEMON_ID: fingerprint(DAEMON_KEY), "by_admin": None}
    assert DAEMON_KEY not in everything


def test_the_dashboards_reads_work_with_a_read_key(scoped):
    key = {"X-API-Key": READ_KEY}
    for path in (
        "/api/daemons", "/api/events?after=0&limit=500", "/api/daemon/uptime",
        # What the console asks for now: a page, its history, the newest events, one daemon,
        # the regions and the leases.
        "/api/daemons?sort=status&limit=50", f"/api/daemons/history?ids={DAEMON_ID}&window=24h&slots=48",
        "/api/events?order=newest&limit=50", f"/api/daemons?id={DAEMON_ID}&limit=1",
        "/api/daemons?region=eu-west&sort=status&limit=50", "/api/regions", "/api/leases",
    ):
        assert scoped.get(path, headers=key).status_code == 200, path
    assert scoped.get("/metrics", headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 200


# ------------------------------------------------------------------ limits per kind


@pytest.fixture
def tight(app, make_app):
    return make_app(
        daemon_api_keys=(DAEMON_KEY, OTHER_DAEMON_KEY),
        read_api_keys=(READ_KEY,),
        admin_rate_limit="3 per minute",
        daemon_rate_limit="2 per minute",
        read_rate_limit="4 per minute",
    ).test_client()


def _get(client, key, address, path=f"/api/daemon/{DAEMON_ID}"):
    return client.get(path, headers={"X-API-Key": key}, environ_base={"REMOTE_ADDR": address})


def test_a_daemon_key_is_limited_per_key_not_per_address(tight):
    # One key from many addresses: one bucket of DAEMON_RATE_LIMIT.
    statuses = [_get(tight, DAEMON_KEY, f"10.0.0.{n}").status_code for n in range(3)]
    assert statuses == [404, 404, 429]
    refused = _get(tight, DAEMON_KEY, "10.0.0.9")
    assert refused.get_json() == {"error": "Rate limit exceeded (2 per 1 minute); retry later"}
    # Many keys behind one address (a NAT): a bucket each, and none is the address's.
    assert [_get(tight, OTHER_DAEMON_KEY, "10.0.0.1").status_code for _ in range(3)] == [404, 404, 429]
    assert _get(tight, API_KEY, "10.0.0.1").status_code == 404


def test_wrong_keys_stay_limited_per_address_in_the_admin_bucket(tight):
    wrong = "not-a-daemon-key-000000"
    assert [_get(tight, wrong, "10.0.0.1").status_code for _ in range(3)] == [401, 401, 401]
    assert _get(tight, wrong, "10.0.0.1").status_code == 429
    # The admin key from that address shares the spent bucket; a daemon key does not.
    assert _get(tight, API_KEY, "10.0.0.1").status_code == 429
    assert _get(tight, DAEMON_KEY, "10.0.0.1").status_code == 404


def test_read_keys_have_their_own_limit_per_address(tight):
    statuses = [_get(tight, READ_KEY, "10.0.0.1", "/api/daemons").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert _get(tight, READ_KEY, "10.0.0.2", "/api/daemons").status_code == 200


def test_a_refused_kind_still_spends_its_bucket(tight):
    # A 403 is counted like any call: a daemon key cannot probe the API for free.
    assert [_get(tight, DAEMON_KEY, "10.0.0.1", "/api/daemons").status_code for _ in range(3)] == [
        403, 403, 429,
    ]


def test_metrics_are_limited_and_key_guessing_there_is_throttled(tight):
    guesses = [
        tight.get("/metrics", headers={"Authorization": f"Bearer guess-{n:04d}-xxxxxxxx"})
        for n in range(4)
    ]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert int(guesses[-1].headers["Retry-After"]) >= 1
    assert tight.get("/metrics", headers=HEADERS).status_code == 429
