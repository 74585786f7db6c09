"""Maintenance windows: the API, the CLI, and downtime inside a window counted as planned.

Every test runs on SQLite and on Postgres, with a clock the test moves. Times are
seconds after the test clock's START; the TTL is 60 s, so a daemon whose last beat
was at 900 is down from 960.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.maintenance import windows
from app.uptime import queries as uptime_queries
from app.uptime.period import Period

from tests.support.api import HEADERS
from tests.support.clocks import START
from tests.support.uptime_fixtures import iso

DAEMON = "daemon_macmini_1"  # registration() gives it capabilities queue and cron


@pytest.fixture
def open_window(client):
    """POST /api/maintenance from ``start`` to ``end`` (seconds after START); returns the answer."""

    def post(start: float, end: float, expect: int = 201, reason: str = "deploy", **selector):
        body = {"from": iso(start), "to": iso(end), "reason": reason, **selector}
        response = client.post("/api/maintenance", json=body, headers=HEADERS)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    return post


@pytest.fixture
def outage(clock, make_daemon, alive):
    """``daemon_ids`` beat until ``last_beat`` (down from there plus the TTL), come back at
    ``back`` (if given) and beat until ``until``."""

    def run(last_beat: float, back: float | None, until: float, *daemon_ids: str) -> None:
        ids = daemon_ids or (DAEMON,)
        for daemon_id in ids:
            make_daemon(daemonId=daemon_id)
        alive(last_beat, *ids)
        if back is None:
            clock.advance(until - last_beat)
            return
        clock.advance(back - last_beat)
        for daemon_id in ids:
            make_daemon(daemonId=daemon_id)
        alive(until, *ids)

    return run


def interval(start: float, end: float, reason: str, *, ongoing: bool = False) -> dict:
    planned = reason in ("maintenance", "deregistered")
    return {"from": iso(start), "to": iso(end), "reason": reason, "planned": planned, "ongoing": ongoing}


def seconds(report: dict) -> tuple[float, float, float, int]:
    return report["upSeconds"], report["downSeconds"], report["plannedDownSeconds"], report["incidents"]


# --- uptime ---------------------------------------------------------------------


def test_outage_fully_inside_a_window_is_planned(open_window, outage, uptime):
    open_window(600, 1800)
    outage(900, 1500, 2400)
    report = uptime(DAEMON, **{"from": iso(0), "to": iso(2400)})
    assert seconds(report) == (2400 - 540, 0, 540, 0)
    assert report["uptimeRatio"] == 1.0
    assert report["downIntervals"] == [interval(960, 1500, "maintenance")]


def test_outage_that_outlasts_its_window_is_unplanned_after_it(open_window, outage, uptime):
    open_window(600, 1200)
    outage(900, 1500, 2400)
    report = uptime(DAEMON, **{"from": iso(0), "to": iso(2400)})
    assert seconds(report) == (2400 - 540, 300, 240, 1)
    assert report["downIntervals"] == [interval(960, 1200, "maintenance"), interval(1200, 1500, "stale")]


def test_window_in_the_middle_of_an_outage_leaves_one_incident(open_window, outage, uptime):
    open_window(1200, 1500)
    outage(900, 2000, 2400)
    report = uptime(DAEMON, **{"from": iso(0), "to": iso(2400)})
    assert seconds(report) == (2400 - 1040, 740, 300, 1)
    assert [i["reason"] for i in report["downIntervals"]] == ["stale", "maintenance", "stale"]


def test_window_ended_early_covers_only_until_it_ended(clock, client, open_window, outage, uptime):
    window = open_window(600, 1800)
    outage(900, None, 1100)
    ended = client.delete(f"/api/maintenance/{window['id']}", headers=HEADERS)
    assert ended.status_code == 200
    assert (ended.get_json()["to"], ended.get_json()["endedEarlyAt"], ended.get_json()["state"]) == (
        iso(1100), iso(1100), "ended",
    )
    clock.advance(400)
    report = uptime(DAEMON, **{"from": iso(0), "to": iso(1500)})
    assert seconds(report) == (960, 400, 140, 1)
    assert report["downIntervals"] == [
        interval(960, 1100, "maintenance"), interval(1100, 1500, "stale", ongoing=True)
    ]


def test_overlapping_windows_count_each_second_once(open_window, outage, uptime):
    open_window(600, 1200, daemonIds=[DAEMON])
    open_window(900, 1800, capability="cron")
    open_window(1000, 1100)  # the whole fleet, inside both
    outage(900, 1500, 2400)
    report = uptime(DAEMON, **{"from": iso(0), "to": iso(2400)})
    assert seconds(report) == (2400 - 540, 0, 540, 0)
    assert report["downIntervals"] == [interval(960, 1500, "maintenance")]


def test_adjoining_windows_make_one_planned_stretch(open_window, outage, uptime):
    open_window(600, 1000, daemonIds=[DAEMON])
    open_window(1000, 1300, capability="cron")
    outage(900, 1500, 2400)
    report = uptime(DAEMON, **{"from": iso(0), "to": iso(2400)})
    assert seconds(report) == (2400 - 540, 200, 340, 1)
    assert report["downIntervals"] == [interval(960, 1300, "maintenance"), interval(1300, 1500, "stale")]


def test_ongoing_outage_is_planned_while_the_window_lasts(clock, open_window, outage, uptime):
    open_window(600, 1800)
    outage(900, None, 1500)
    during = uptime(DAEMON, **{"from": iso(0), "to": iso(1500)})
    assert seconds(during) == (960, 0, 540, 0)
    assert during["downIntervals"] == [interval(960, 1500, "maintenance", ongoing=True)]
    clock.advance(900)
    after = uptime(DAEMON, **{"from": iso(0), "to": iso(2400)})
    assert seconds(after) == (960, 600, 840, 1)
    assert after["downIntervals"] == [
        interval(960, 1800, "maintenance"), interval(1800, 2400, "stale", ongoing=True)
    ]


def test_daemon_ids_select_only_the_listed_daemons(open_window, outage, uptime):
    open_window(600, 1800, daemonIds=["covered"])
    outage(900, 1500, 2400, "covered", "other")
    fleet = {d["daemonId"]: d for d in uptime(**{"from": iso(0), "to": iso(2400)})["daemons"]}
    assert seconds(fleet["covered"]) == (1860, 0, 540, 0)
    assert seconds(fleet["other"]) == (1860, 540, 0, 1)


@pytest.mark.parametrize("recorded_by", ["nobody", "watcher", "health"])
@pytest.mark.parametrize(
    ("selector", "covered", "uncovered"),
    [
        pytest.param({"capability": "cron"}, {"capabilities": ["cron"]},
                     [{"capabilities": ["queue"]}], id="capability"),
        # A daemon without a region: a region window never covers it.
        pytest.param({"region": "eu-west"}, {"region": "eu-west"},
                     [{"region": "us-east"}, {}], id="region"),
    ],
)
def test_a_selector_picks_daemons_as_they_were_when_they_went_down(
    clock, engine, make_daemon, open_window, alive, uptime, read_health, recorded_by,
    selector, covered, uncovered,
):
    from app.registry import service

    open_window(600, 1800, **selector)
    make_daemon(daemonId="in_worker", **covered)
    others = [f"out_worker_{n}" for n in range(len(uncovered))]
    for daemon_id, fields in zip(others, uncovered):
        make_daemon(daemonId=daemon_id, **fields)
    alive(900, "in_worker", *others)
    clock.advance(600)  # all down from 960, now 1500
    # What the outage is matched by comes from the row until the expiry is recorded, then from the event.
    if recorded_by == "watcher":
        with engine.connect() as conn:
            assert service.record_expiries(conn, now=clock.now()) == ["in_worker", *others]
    elif recorded_by == "health":
        assert len(read_health()["stale"]) == 1 + len(others)
    fleet = {d["daemonId"]: d for d in uptime(**{"from": iso(0), "to": iso(1500)})["daemons"]}
    assert seconds(fleet["in_worker"]) == (960, 0, 540, 0)
    for daemon_id in others:
        assert seconds(fleet[daemon_id]) == (960, 540, 0, 1)


def test_a_region_window_is_echoed_and_named_in_the_fleet_view(client, clock, make_daemon, open_window):
    make_daemon(daemonId="eu_worker", region="eu-west")
    make_daemon(daemonId="us_worker", region="us-east")
    window = open_window(0, 600, region="eu-west")
    assert (window["region"], window["capability"], window["daemonIds"]) == ("eu-west", None, None)
    daemons = client.get("/api/daemons", headers=HEADERS).get_json()["daemons"]
    covered = {d["daemonId"]: d["maintenance"] for d in daemons}
    assert covered == {"eu_worker": {"id": window["id"], "reason": "deploy", "to": iso(600)},
                       "us_worker": None}


def test_deregistration_inside_a_window_stays_a_deregistration(
    clock, client, open_window, make_daemon, alive, uptime
):
    open_window(600, 1800)
    make_daemon()
    alive(900)
    assert client.delete(f"/api/daemon/{DAEMON}", headers=HEADERS).status_code == 200
    clock.advance(300)
    report = uptime(DAEMON, **{"from": iso(0), "to": iso(1200)})
    assert seconds(report) == (900, 0, 300, 0)
    assert report["downIntervals"] == [interval(900, 1200, "deregistered", ongoing=True)]


def test_health_is_unchanged_by_a_window(open_window, make_daemon, clock, read_health):
    open_window(0, 3600)
    make_daemon()
    clock.advance(61)
    health = read_health()
    assert (health["totalActive"], [d["daemonId"] for d in health["stale"]]) == (0, [DAEMON])


# --- the API ---------------------------------------------------------------------


def test_fleet_view_names_the_running_window_that_covers_each_daemon(
    clock, client, make_daemon, open_window
):
    make_daemon(daemonId="listed", capabilities=["queue"])
    make_daemon(daemonId="cron_worker", capabilities=["cron"])
    make_daemon(daemonId="other", capabilities=["queue"])
    listed = open_window(0, 600, reason="reboot", daemonIds=["listed"])
    open_window(300, 900, capability="cron")  # not running yet

    def maintenance() -> dict:
        daemons = client.get("/api/daemons", headers=HEADERS).get_json()["daemons"]
        return {d["daemonId"]: d["maintenance"] for d in daemons}

    assert maintenance() == {
        "cron_worker": None,
        "listed": {"id": listed["id"], "reason": "reboot", "to": iso(600)},
        "other": None,
    }
    clock.advance(600)  # the first is over, the second runs
    found = maintenance()
    assert (found["listed"], found["other"], found["cron_worker"]["reason"]) == (None, None, "deploy")



def test_open_window_echoes_it_with_an_id(open_window):
    window = open_window(600, 1800, reason="kernel upgrade", capability="cron")
    assert isinstance(window["id"], int)
    assert window == {
        "id": window["id"], "from": iso(600), "to": iso(1800), "reason": "kernel upgrade",
        "daemonIds": None, "capability": "cron", "region": None, "state": "upcoming",
        "createdAt": iso(0), "endedEarlyAt": None,
    }


def test_whole_fleet_and_listed_daemons(open_window):
    fleet = open_window(0, 60)
    assert (fleet["daemonIds"], fleet["capability"], fleet["state"]) == (None, None, "active")
    listed = open_window(0, 60, daemonIds=["b", "a", "b"])
    assert listed["daemonIds"] == ["b", "a"]  # a daemon named twice is covered once


def test_a_start_in_the_past_starts_now(clock, open_window):
    clock.advance(1000)
    window = open_window(0, 2000)
    assert (window["from"], window["state"]) == (iso(1000), "active")


def test_list_shows_current_and_upcoming_windows_soonest_first(clock, client, open_window):
    later = open_window(3000, 4000)
    current = open_window(0, 600, daemonIds=["a"])
    ending = open_window(0, 100)
    clock.advance(100)  # 'ending' is over now
    listed = client.get("/api/maintenance", headers=HEADERS).get_json()["windows"]
    assert [w["id"] for w in listed] == [current["id"], later["id"]]
    assert ending["id"] not in [w["id"] for w in listed]
    assert [w["state"] for w in listed] == ["active", "upcoming"]
    assert listed[0]["daemonIds"] == ["a"]


def test_ending_an_upcoming_window_cancels_it(client, open_window):
    window = open_window(600, 1800)
    response = client.delete(f"/api/maintenance/{window['id']}", headers=HEADERS)
    assert (response.status_code, response.get_json()["state"]) == (200, "cancelled")
    assert client.get("/api/maintenance", headers=HEADERS).get_json()["windows"] == []
    assert client.delete(f"/api/maintenance/{window['id']}", headers=HEADERS).status_code == 404


def test_ending_a_window_that_is_over_leaves_it_as_it_was(clock, client, open_window):
    window = open_window(0, 600)
    clock.advance(700)
    response = client.delete(f"/api/maintenance/{window['id']}", headers=HEADERS)
    assert response.status_code == 200
    assert (response.get_json()["to"], response.get_json()["endedEarlyAt"]) == (iso(600), None)


@pytest.mark.parametrize("window_id", ["12345", str(2**63 - 1), str(2**63), "9" * 40])
def test_ending_an_unknown_window_is_404_json(client, window_id):
    response = client.delete(f"/api/maintenance/{window_id}", headers=HEADERS)
    assert response.status_code == 404
    assert "error" in response.get_json()


GOOD = {"from": iso(600), "to": iso(1800), "reason": "deploy"}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({**GOOD, "daemonIds": ["a"], "capability": "cron"}, {"daemonIds", "capability"}),
        ({**GOOD, "capability": "cron", "region": "eu-west"}, {"capability", "region"}),
        ({**GOOD, "region": "eu west"}, {"region"}),
        ({**GOOD, "region": "r" * 65}, {"region"}),
        ({**GOOD, "daemonIds": []}, {"daemonIds"}),
        ({**GOOD, "daemonIds": ["ok", "not ok"]}, {"daemonIds[1]"}),
        ({**GOOD, "daemonIds": ["heartbeat"]}, {"daemonIds[0]"}),
        ({**GOOD, "daemonIds": [f"d{i}" for i in range(1001)]}, {"daemonIds"}),
        ({**GOOD, "daemonIds": "a"}, {"daemonIds"}),
        ({**GOOD, "capability": ""}, {"capability"}),
        ({**GOOD, "capability": "c" * 65}, {"capability"}),
        ({**GOOD, "reason": ""}, {"reason"}),
        ({**GOOD, "reason": "r" * 257}, {"reason"}),
        ({**GOOD, "reason": "a\x00b"}, {"reason"}),
        ({k: v for k, v in GOOD.items() if k != "reason"}, {"reason"}),
        ({**GOOD, "from": iso(1800), "to": iso(600)}, {"from"}),
        ({**GOOD, "from": iso(600), "to": iso(600)}, {"from"}),
        ({**GOOD, "from": "2026-01-25T12:10:00", "to": iso(1800)}, {"from"}),
        ({**GOOD, "to": "tomorrow"}, {"to"}),
        ({**GOOD, "from": iso(-7200), "to": iso(-3600)}, {"to"}),
        ({**GOOD, "to": iso(600 + 31 * 86400 + 1)}, {"to"}),
    ],
)
def test_bad_window_is_400_naming_the_fields(client, body, fields):
    response = client.post("/api/maintenance", json=body, headers=HEADERS)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()["details"]) == fields
    assert client.get("/api/maintenance", headers=HEADERS).get_json()["windows"] == []


def test_a_bad_id_in_the_list_is_named_with_the_id_rule(client):
    response = client.post("/api/maintenance", json={**GOOD, "daemonIds": ["ok", "not ok"]}, headers=HEADERS)
    assert response.get_json()["details"] == {
        "daemonIds[1]": "must be 1-128 characters: letters, digits, '_', '.', ':' or '-', "
        "starting with a letter or digit"
    }


def test_window_needs_json(client):
    response = client.post("/api/maintenance", data="from=now", headers=HEADERS)
    assert response.status_code == 415
    assert "error" in response.get_json()


def test_windows_share_the_rate_limit(make_app):
    limited = make_app(admin_rate_limit="2 per minute").test_client()
    answers = [limited.get("/api/maintenance", headers=HEADERS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "Rate limit exceeded" in answers[2].get_json()["error"]
    assert limited.post("/api/maintenance", json=GOOD, headers=HEADERS).status_code == 429


def test_windows_need_the_key(client):
    assert client.get("/api/maintenance").status_code == 401
    assert client.post("/api/maintenance", json=GOOD).status_code == 401
    assert client.delete("/api/maintenance/1").status_code == 401


# --- the CLI ---------------------------------------------------------------------


def test_cli_opens_lists_and_ends_a_window(app, clock, client):
    runner = app.test_cli_runner()
    started = runner.invoke(
        args=["daemons", "maintenance", "start", "--capability", "cron", "--for", "30m",
              "--reason", "deploy"]
    )
    assert started.exit_code == 0, started.output
    window_id = int(started.stdout.strip())  # only the id on stdout, for scripts
    [window] = client.get("/api/maintenance", headers=HEADERS).get_json()["windows"]
    assert (window["id"], window["capability"], window["from"], window["to"]) == (
        window_id, "cron", iso(0), iso(1800),
    )
    listed = runner.invoke(args=["daemons", "maintenance", "list"])
    assert f"{window_id}" in listed.stdout and "capability cron" in listed.stdout
    clock.advance(60)
    ended = runner.invoke(args=["daemons", "maintenance", "end", str(window_id)])
    assert ended.exit_code == 0, ended.output
    assert client.get("/api/maintenance", headers=HEADERS).get_json()["windows"] == []


def test_cli_covers_listed_daemons_between_given_times(app, client):
    runner = app.test_cli_runner()
    started = runner.invoke(
        args=["daemons", "maintenance", "start", "--daemon", "a", "--daemon", "b",
              "--from", iso(600), "--to", iso(1200), "--reason", "reboot"]
    )
    assert started.exit_code == 0, started.output
    [window] = client.get("/api/maintenance", headers=HEADERS).get_json()["windows"]
    assert (window["daemonIds"], window["from"], window["to"]) == (["a", "b"], iso(600), iso(1200))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for", "30m", "--to", iso(600)], "exactly one of --to and --for"),
        (["--reason", "x"], "exactly one of --to and --for"),
        (["--for", "soon"], "--for"),
        (["--to", "noon"], "--to"),
        (["--for", "30m", "--daemon", "a", "--capability", "cron"], "--capability give one of daemonIds, capability or region"),
        (["--for", "30m", "--daemon", "not ok"], "--daemon must be 1-128 characters"),
        (["--from", iso(-7200), "--to", iso(-3600)], "--to/--for must be in the future"),
        (["--for", "32d"], "--to/--for must be at most 31 days"),
    ],
)
def test_cli_refuses_a_bad_window(app, client, args, message):
    runner = app.test_cli_runner()
    reason = [] if "--reason" in args else ["--reason", "deploy"]
    result = runner.invoke(args=["daemons", "maintenance", "start", *args, *reason])
    assert result.exit_code != 0
    assert message in result.stderr
    assert client.get("/api/maintenance", headers=HEADERS).get_json()["windows"] == []


def test_cli_end_of_an_unknown_window_fails(app):
    result = app.test_cli_runner().invoke(args=["daemons", "maintenance", "end", "999"])
    assert result.exit_code != 0
    assert "no maintenance window 999" in result.stderr


def test_racing_ends_agree_on_when_the_window_ended(clock, engine, open_window):
    window = open_window(0, 600)
    clock.advance(100)
    barrier = threading.Barrier(4)
    answers: list[dict] = []

    def end(seconds_later: float) -> None:
        with engine.connect() as conn:
            barrier.wait()
            answers.append(windows.end(conn, window["id"], now=clock.now() + timedelta(seconds=seconds_later)))

    threads = [threading.Thread(target=end, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One of them ended it; the others found it over and answered it as it now is.
    assert len({(a["to"], a["endedEarlyAt"]) for a in answers}) == 1, answers
    assert answers[0]["to"] in {iso(100 + n) for n in range(4)}


def test_uptime_finds_the_outages_windows_may_cover_through_their_index(pg_engine):
    # The timeline matches windows against every stale span; the partial index on
    # stale events (migration 0014) serves that only while its predicate is the
    # view's own reason rule. Seq scans off: the plan uses the index if it can at all.
    period = Period(start=START - timedelta(days=30), end=START, now=START)
    query = uptime_queries.summaries_query(period, ["alpha"]).compile(
        pg_engine, compile_kwargs={"literal_binds": True}
    )
    with pg_engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(text(f"EXPLAIN {query}")).scalars())
    assert "ix_daemon_events_stale" in plan
