"""Pruning keeps storage bounded without changing uptime inside the retention period."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.http.context import database
from app.models import daemon_events, maintenance_window_daemons, maintenance_windows
from tests.support.api import HEADERS, heartbeat_body, registration


def _kinds(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            select(daemon_events.c.daemon_id, daemon_events.c.kind).order_by(daemon_events.c.id)
        ).all()
    return [tuple(r) for r in rows]


def _prune(app, days: int):
    result = app.test_cli_runner().invoke(args=["daemons", "prune-history", "--days", str(days)])
    assert result.exit_code == 0, result.output
    return result.output


def _uptime(client, daemon_id):
    response = client.get(f"/api/daemon/{daemon_id}/uptime", query_string={"window": "1d"}, headers=HEADERS)
    return response.get_json()


DAY = 86400


def test_prune_removes_old_events_and_forgets_departed_daemons(
    app, clock, client, make_daemon, beat, engine
):
    make_daemon(daemonId="departed")
    make_daemon(daemonId="flappy")
    for _ in range(3):  # old flaps: degraded and back
        clock.advance(30)
        beat("flappy", status="degraded")
        clock.advance(30)
        beat("flappy", status="healthy")
    clock.advance(10 * DAY)  # both go stale long ago
    client.get("/api/daemon/health", headers=HEADERS)
    make_daemon(daemonId="flappy")  # flappy came back; departed never did
    clock.advance(30)
    output = _prune(app, days=5)
    assert ("departed", "registered") not in _kinds(engine)
    assert ("departed", "stale") not in _kinds(engine)
    # flappy keeps its last pre-cut event (the outage the new registration ended).
    assert _kinds(engine) == [("flappy", "stale"), ("flappy", "registered")]
    assert output.startswith("Removed 9 history events older than 5 days")


def test_prune_keeps_uptime_within_retention_unchanged(app, make_app, clock):
    # A one-hour TTL lets a few beats cover four days (the rule is the same).
    hourly = make_app(daemon_ttl_seconds=3600)
    client = hourly.test_client()
    client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    for n in range(4 * 48):  # four days of beats every 30 minutes, degraded on day one
        clock.advance(1800)
        body = heartbeat_body(status="degraded" if n < 10 else "healthy")
        assert client.post("/api/daemon/heartbeat", json=body, headers=HEADERS).status_code == 200
    before = _uptime(client, "daemon_macmini_1")
    assert _prune(hourly, days=1).startswith("Removed 2 ")  # registered, degraded
    assert _uptime(client, "daemon_macmini_1") == before
    assert before["upSeconds"] == DAY


def test_prune_uses_the_configured_retention(make_app, app, clock, make_daemon):
    make_daemon(daemonId="old")
    clock.advance(3 * DAY)
    client = app.test_client()
    client.get("/api/daemon/health", headers=HEADERS)
    short = make_app(history_retention_days=1)
    result = short.test_cli_runner().invoke(args=["daemons", "prune-history"])
    assert "older than 1 days" in result.output
    assert "Removed 2" in result.output


def test_prune_removes_maintenance_windows_that_ended_before_the_cut(app, clock, client):
    def open_window(hours: float, **selector) -> int:
        start = clock.now().isoformat()
        end = (clock.now() + timedelta(hours=hours)).isoformat()
        body = {"from": start, "to": end, "reason": "deploy", **selector}
        response = client.post("/api/maintenance", json=body, headers=HEADERS)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    open_window(1, daemonIds=["a", "b"])  # over after an hour
    kept = open_window(30)  # still running at the cut
    clock.advance(2 * DAY)
    assert "Removed 1 maintenance windows" in _prune(app, days=1)
    with app.test_client() as reader, database(app).engine.connect() as conn:
        assert reader.get("/api/maintenance", headers=HEADERS).get_json()["windows"] == []
        assert conn.execute(select(maintenance_windows.c.id)).scalars().all() == [kept]
        assert conn.execute(select(maintenance_window_daemons)).all() == []
