"""Time-weighted uptime that agrees with /health, from history that nobody had to poll."""

from __future__ import annotations

import pytest

from tests.support.api import HEADERS
from tests.support.uptime_fixtures import iso


def test_running_daemon_is_up_the_whole_time(make_daemon, alive, uptime):
    make_daemon()
    alive(3600)
    report = uptime("daemon_macmini_1", window="1h")
    assert (report["from"], report["to"]) == (iso(0), iso(3600))
    assert report["uptimeRatio"] == 1.0
    assert (report["upSeconds"], report["downSeconds"], report["incidents"]) == (3600, 0, 0)
    assert report["downIntervals"] == []


def test_restart_while_live_is_not_downtime(make_daemon, alive, uptime):
    make_daemon()
    alive(1800)
    make_daemon()
    alive(3600)
    report = uptime("daemon_macmini_1", window="1h")
    assert (report["upSeconds"], report["incidents"]) == (3600, 0)


def test_stale_gap_nobody_polled_counts_as_down(clock, make_daemon, beat, alive, uptime):
    make_daemon()
    clock.advance(30)
    beat()  # last sign of life: up until 30 + TTL = 90
    clock.advance(970)  # silence until 1000, and nobody reads /health
    make_daemon()
    alive(2000)
    report = uptime("daemon_macmini_1", **{"from": iso(0), "to": iso(2000)})
    assert report["upSeconds"] == 90 + 1000
    assert report["downSeconds"] == 910
    assert report["incidents"] == 1
    assert report["uptimeRatio"] == round(1090 / 2000, 6)
    assert report["downIntervals"] == [
        {"from": iso(90), "to": iso(1000), "reason": "stale", "planned": False, "ongoing": False}
    ]


def test_expired_unread_daemon_is_down_from_its_ttl_on(clock, make_daemon, uptime):
    make_daemon()
    clock.advance(600)
    report = uptime("daemon_macmini_1", window="10m")
    assert (report["upSeconds"], report["downSeconds"]) == (60, 540)
    assert report["downIntervals"] == [
        {"from": iso(60), "to": iso(600), "reason": "stale", "planned": False, "ongoing": True}
    ]


def test_a_period_wholly_in_the_future_holds_nothing_observed(clock, make_daemon, uptime):
    make_daemon()
    clock.advance(600)  # expired at 60 and still down: an ongoing outage
    later = {"from": iso(3600), "to": iso(7200)}
    # Not an outage that ends before it starts: no history in that period yet.
    assert uptime("daemon_macmini_1", expect=404, **later) == {
        "error": "No history for daemon 'daemon_macmini_1' in this period"
    }
    assert uptime(**later)["daemons"] == []


def test_uptime_is_the_same_whether_or_not_health_was_read(clock, make_daemon, read_health, uptime):
    make_daemon()
    clock.advance(600)
    before = uptime("daemon_macmini_1", window="10m")
    assert [d["daemonId"] for d in read_health()["stale"]] == ["daemon_macmini_1"]
    assert uptime("daemon_macmini_1", window="10m") == before


def test_deregistration_is_planned_not_an_outage(clock, client, make_daemon, alive, uptime):
    make_daemon()
    alive(600)
    assert client.delete("/api/daemon/daemon_macmini_1", headers=HEADERS).status_code == 200
    clock.advance(300)
    make_daemon()
    alive(1200)
    report = uptime("daemon_macmini_1", window="20m")
    assert (report["upSeconds"], report["plannedDownSeconds"], report["downSeconds"]) == (900, 300, 0)
    assert (report["uptimeRatio"], report["incidents"]) == (1.0, 0)
    assert report["downIntervals"] == [
        {"from": iso(600), "to": iso(900), "reason": "deregistered", "planned": True, "ongoing": False}
    ]


def test_time_is_split_by_reported_status(make_daemon, alive, uptime):
    make_daemon()
    alive(90)
    alive(270, status="degraded")  # first degraded beat at 120
    alive(390, status="unhealthy")  # first unhealthy beat at 300
    alive(600)  # healthy again from 420
    report = uptime("daemon_macmini_1", window="10m")
    assert report["statusSeconds"] == {"healthy": 120 + 180, "degraded": 180, "unhealthy": 120}
    assert report["upSeconds"] == 600


def test_window_clips_the_history(clock, make_daemon, beat, alive, uptime):
    make_daemon()
    clock.advance(30)
    beat()
    clock.advance(3570)  # down from 90 to 3600
    make_daemon()
    alive(7200)
    last_hour = uptime("daemon_macmini_1", window="1h")
    assert (last_hour["upSeconds"], last_hour["downSeconds"], last_hour["incidents"]) == (3600, 0, 0)
    middle = uptime("daemon_macmini_1", **{"from": iso(60), "to": iso(3660)})
    assert (middle["upSeconds"], middle["downSeconds"], middle["incidents"]) == (30 + 60, 3510, 1)
    assert middle["downIntervals"][0]["from"] == iso(90)


def test_period_reaching_into_the_future_stops_at_now(make_daemon, alive, uptime):
    make_daemon()
    alive(600)
    report = uptime("daemon_macmini_1", **{"from": iso(0), "to": iso(7200)})
    assert (report["upSeconds"], report["downSeconds"]) == (600, 0)


def test_time_before_the_first_registration_is_not_counted(clock, make_daemon, alive, uptime):
    clock.advance(3000)
    make_daemon()
    alive(3600)
    report = uptime("daemon_macmini_1", window="1h")
    assert (report["upSeconds"], report["downSeconds"], report["uptimeRatio"]) == (600, 0, 1.0)


def test_fleet_uptime_lists_every_daemon_known_in_the_window(clock, make_daemon, alive, uptime):
    make_daemon(daemonId="steady")
    make_daemon(daemonId="flaky")
    alive(600, "steady")  # flaky never beats: down from 60
    report = uptime(window="10m")
    assert [d["daemonId"] for d in report["daemons"]] == ["flaky", "steady"]
    flaky, steady = report["daemons"]
    assert (flaky["upSeconds"], flaky["downSeconds"], flaky["incidents"]) == (60, 540, 1)
    assert steady["uptimeRatio"] == 1.0
    assert set(steady) == {
        "daemonId", "uptimeRatio", "upSeconds", "downSeconds", "plannedDownSeconds",
        "statusSeconds", "incidents",
    }


def test_fleet_uptime_defaults_to_24h(clock, make_daemon, uptime):
    make_daemon()
    clock.advance(60)
    report = uptime()
    assert (report["from"], report["to"]) == (iso(60 - 86400), iso(60))


def test_daemon_with_no_history_in_period_is_404(uptime):
    report = uptime("nobody", expect=404)
    assert "nobody" in report["error"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"window": "5x"}, "window"),
        ({"window": "0h"}, "window"),
        ({"window": "401d"}, "window"),
        ({"window": "-1h"}, "window"),
        ({"window": "1h", "from": "2026-01-25T00:00:00Z"}, "window"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-01-25T00:00:00"}, "to"),
        ({"from": "2026-01-25T12:00:00Z", "to": "2026-01-25T11:00:00Z"}, "from"),
        ({"from": "2020-01-25T12:00:00Z", "to": "2026-01-25T11:00:00Z"}, "from"),
    ],
)
@pytest.mark.parametrize("daemon_id", [None, "daemon_macmini_1"])
def test_bad_period_is_400_naming_the_parameter(make_daemon, uptime, params, param, daemon_id):
    make_daemon()
    error = uptime(daemon_id, expect=400, **params)
    assert error["error"].startswith(f"Invalid query parameter {param}:")
    assert param in error["details"]


def test_uptime_needs_the_key(client):
    assert client.get("/api/daemon/uptime").status_code == 401
    assert client.get("/api/daemon/x/uptime").status_code == 401



def test_expiry_recorded_by_the_watcher_is_counted_once(clock, make_daemon, engine, uptime, read_health):
    from app.registry import service

    make_daemon()
    clock.advance(300)
    with engine.connect() as conn:
        assert service.record_expiries(conn, now=clock.now()) == ["daemon_macmini_1"]
    clock.advance(300)
    report = uptime("daemon_macmini_1", window="10m")
    assert (report["upSeconds"], report["downSeconds"], report["incidents"]) == (60, 540, 1)
    read_health()  # and after /health reaps the row, still the same
    assert uptime("daemon_macmini_1", window="10m") == report
