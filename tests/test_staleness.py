"""TTL emulation: the service's clock decides, expired rows behave as gone."""

from __future__ import annotations

from sqlalchemy import func, select

from app.alerts import watcher
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from app.models import daemons
from tests.support.api import HEADERS, registration


def test_daemon_just_under_ttl_is_active(clock, make_daemon, beat, read_health):
    make_daemon()
    clock.advance(10)
    beat()
    clock.advance(59.999)
    health = read_health()
    assert health["totalActive"] == 1
    assert health["stale"] == []


def test_daemon_exactly_at_ttl_is_still_active(clock, make_daemon, read_health):
    # Stale means "no heartbeat for more than the TTL".
    make_daemon()
    clock.advance(60)
    assert read_health()["totalActive"] == 1


def test_daemon_just_over_ttl_is_stale(clock, make_daemon, read_health):
    make_daemon()
    clock.advance(60.001)
    health = read_health()
    assert health["activeDaemons"] == []
    assert health["totalActive"] == 0
    assert [d["daemonId"] for d in health["stale"]] == ["daemon_macmini_1"]


def test_stale_daemon_is_reported_once_with_full_state(clock, make_daemon, beat, read_health):
    make_daemon()
    beat(status="degraded", tasksProcessed=9, currentTask="evt_7")
    clock.advance(61)
    [stale] = read_health()["stale"]
    assert stale["status"] == "degraded"
    assert stale["tasksProcessed"] == 9
    assert stale["currentTask"] == "evt_7"
    assert stale["lastHeartbeat"] == "2026-01-25T12:00:00Z"
    assert read_health()["stale"] == []


def test_a_head_request_does_not_take_the_stale_report(client, clock, make_daemon, read_health):
    """HEAD answers without a body: were it to reap, the once-only stale report would go unseen."""
    make_daemon(region="eu-west")
    clock.advance(61)
    for path in ("/api/daemon/health", "/api/daemon/health?region=eu-west"):
        head = client.head(path, headers=HEADERS)
        assert (head.status_code, head.mimetype, head.data) == (200, "application/json", b"")
    assert [d["daemonId"] for d in read_health()["stale"]] == ["daemon_macmini_1"]


def test_health_removes_stale_rows(clock, make_daemon, read_health, engine):
    make_daemon(daemonId="old")
    clock.advance(45)
    make_daemon(daemonId="young")
    clock.advance(30)
    health = read_health()
    assert [d["daemonId"] for d in health["activeDaemons"]] == ["young"]
    assert [d["daemonId"] for d in health["stale"]] == ["old"]
    with engine.connect() as conn:
        assert conn.execute(select(daemons.c.daemon_id)).scalars().all() == ["young"]


def test_heartbeat_after_ttl_is_404(clock, make_daemon, beat):
    make_daemon()
    clock.advance(61)
    response = beat()
    assert response.status_code == 404
    assert response.get_json() == {"error": "Daemon not registered", "reason": "expired"}


def test_heartbeat_after_ttl_does_not_revive_or_swallow_stale_report(
    clock, make_daemon, beat, read_health
):
    make_daemon()
    clock.advance(61)
    assert beat().status_code == 404
    health = read_health()
    assert health["activeDaemons"] == []
    assert [d["daemonId"] for d in health["stale"]] == ["daemon_macmini_1"]


def test_heartbeat_after_stale_report_is_404(clock, make_daemon, beat, read_health, engine):
    make_daemon()
    clock.advance(61)
    read_health()
    assert beat().status_code == 404
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(daemons)).scalar_one() == 0


def test_staleness_uses_receipt_time_not_daemon_clock(clock, make_daemon, beat, read_health):
    # A daemon whose clock is hours behind is alive while it keeps beating...
    make_daemon(registeredAt="2026-01-25T03:00:00Z")
    for _ in range(5):
        clock.advance(30)
        assert beat(lastHeartbeat="2026-01-25T03:00:00Z").status_code == 200
    health = read_health()
    assert health["totalActive"] == 1
    assert health["activeDaemons"][0]["reportedLastHeartbeat"] == "2026-01-25T03:00:00Z"


def test_daemon_clock_in_the_future_does_not_keep_it_alive(clock, make_daemon, beat, read_health):
    # ...and one whose clock is hours ahead still goes stale on time.
    make_daemon()
    beat(lastHeartbeat="2026-01-25T18:00:00Z")
    clock.advance(61)
    assert [d["daemonId"] for d in read_health()["stale"]] == ["daemon_macmini_1"]


def test_ttl_is_configurable(app, make_app, clock):
    client = make_app(daemon_ttl_seconds=5).test_client()
    client.post("/api/daemon/register", json=registration(daemonId="short_ttl"), headers=HEADERS)
    clock.advance(5.5)
    health = client.get("/api/daemon/health", headers=HEADERS).get_json()
    assert "short_ttl" in [d["daemonId"] for d in health["stale"]]


def test_a_late_heartbeat_does_not_revive_a_daemon_whose_expiry_was_recorded(
    app, clock, make_daemon, beat, read_health, engine
):
    # A request that read the clock just before the TTL ran out, and reaches the
    # row only after a watcher recorded the expiry, finds the daemon gone.
    make_daemon()
    clock.advance(61)
    with Lanes() as lanes:
        assert watcher.tick(watcher_of(app), lanes).stale == ["daemon_macmini_1"]
    clock.advance(-2)  # the late request's reading
    assert beat().status_code == 404
    clock.advance(2)
    assert [d["daemonId"] for d in read_health()["stale"]] == ["daemon_macmini_1"]
