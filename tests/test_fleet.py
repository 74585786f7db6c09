"""Read-only fleet views: any number of screens, and /health's stale report stays whole."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.api import HEADERS


def _fleet(client):
    response = client.get("/api/daemons", headers=HEADERS)
    assert response.status_code == 200
    return response.get_json()


def test_fleet_marks_expired_daemons_stale_without_reaping(clock, client, make_daemon, beat, read_health):
    make_daemon(daemonId="quiet")
    make_daemon(daemonId="busy")
    clock.advance(45)
    beat("busy")
    clock.advance(30)
    for _ in range(3):  # many screens watching...
        fleet = _fleet(client)
    assert [(d["daemonId"], d["stale"]) for d in fleet["daemons"]] == [("busy", False), ("quiet", True)]
    assert (fleet["totalActive"], fleet["totalStale"]) == (1, 1)
    assert fleet["daemons"][1]["expiresAt"] == "2026-01-25T12:01:00Z"
    # ...and the specification's reader still gets its stale report, once.
    assert [d["daemonId"] for d in read_health()["stale"]] == ["quiet"]


def test_events_feed_pages_by_id(clock, client, make_daemon, beat, read_health):
    make_daemon()
    beat(status="unhealthy")
    clock.advance(61)
    read_health()
    first = client.get("/api/events", query_string={"limit": 2}, headers=HEADERS).get_json()
    assert [e["kind"] for e in first["events"]] == ["registered", "status_changed"]
    rest = client.get("/api/events", query_string={"after": first["lastId"]}, headers=HEADERS).get_json()
    assert [e["kind"] for e in rest["events"]] == ["stale"]
    assert rest["events"][0]["occurredAt"] == "2026-01-25T12:01:00Z"
    assert rest["events"][0]["state"]["status"] == "unhealthy"
    empty = client.get("/api/events", query_string={"after": rest["lastId"]}, headers=HEADERS).get_json()
    assert empty == {"events": [], "lastId": rest["lastId"]}


def test_events_feed_reads_the_newest_in_one_request(clock, client, make_daemon, beat):
    make_daemon()
    for status in ("unhealthy", "degraded", "healthy"):
        assert beat(status=status).status_code == 200
    newest = client.get("/api/events", query_string={"limit": 2, "order": "newest"}, headers=HEADERS).get_json()
    assert [e["status"] for e in newest["events"]] == ["degraded", "healthy"]  # still oldest first
    assert newest["lastId"] == newest["events"][-1]["id"]
    later = client.get("/api/events", query_string={"after": newest["lastId"]}, headers=HEADERS).get_json()
    assert later["events"] == []


@pytest.mark.parametrize(("params", "name"), [({"order": "random"}, "order"),
                                             ({"after": "-1"}, "after"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"limit": "501"}, "limit")])
def test_bad_event_paging_is_400(client, params, name):
    response = client.get("/api/events", query_string=params, headers=HEADERS)
    assert response.status_code == 400
    assert response.get_json()["details"] == {name: response.get_json()["details"][name]}


def test_fleet_views_need_the_key(client):
    assert client.get("/api/daemons").status_code == 401
    assert client.get("/api/events").status_code == 401


def test_event_paging_refuses_non_ascii_digits(client):
    # Found by the fuzz test: "¹" passes str.isdigit() but not int().
    response = client.get("/api/events", query_string={"after": "¹"}, headers=HEADERS)
    assert response.status_code == 400


def _page(client, **params):
    response = client.get("/api/daemons", query_string=params, headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _ids(page):
    return [d["daemonId"] for d in page["daemons"]]


@pytest.fixture
def mixed_fleet(clock, make_daemon, beat):
    """gone (stale), sick (unhealthy), slow (degraded), ok_1..ok_3 (healthy), with capabilities."""
    make_daemon(daemonId="gone", capabilities=["cron"])
    clock.advance(45)
    for daemon_id, caps in [("sick", ["queue"]), ("slow", ["queue", "cron"]), ("ok_1", []),
                            ("ok_2", ["queue"]), ("ok_3", ["Queue"])]:
        make_daemon(daemonId=daemon_id, capabilities=caps)
    assert beat("sick", status="unhealthy").status_code == 200
    assert beat("slow", status="degraded").status_code == 200
    clock.advance(30)  # gone's TTL ran out


def test_fleet_sorted_by_status_puts_stale_and_unhealthy_first_and_counts_the_whole_fleet(client, mixed_fleet):
    page = _page(client, sort="status")
    assert _ids(page) == ["gone", "sick", "slow", "ok_1", "ok_2", "ok_3"]
    assert page["counts"] == {"stale": 1, "unhealthy": 1, "degraded": 1, "healthy": 3}
    assert (page["totalActive"], page["totalStale"], page["matching"]) == (5, 1, 6)
    assert page["nextCursor"] is None


@pytest.mark.parametrize("sort", ["id", "status"])
def test_fleet_pages_with_a_cursor_cover_every_daemon_once(client, mixed_fleet, sort):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"sort": sort, "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = _page(client, **params)
        seen += _ids(page)
        pages += 1
        assert page["matching"] == 6 and page["counts"]["healthy"] == 3  # the same on every page
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 2
    assert seen == _ids(_page(client, sort=sort))


def test_a_page_keeps_its_place_when_a_daemon_before_it_changes(client, mixed_fleet, beat):
    first = _page(client, sort="status", limit=2)
    assert _ids(first) == ["gone", "sick"]
    assert beat("sick", status="healthy").status_code == 200  # moves behind the cursor's place
    rest = _page(client, sort="status", limit=10, cursor=first["nextCursor"])
    assert _ids(rest) == ["slow", "ok_1", "ok_2", "ok_3", "sick"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "OK_"}, ["ok_1", "ok_2", "ok_3"]),  # case-insensitive
        ({"q": "_"}, ["ok_1", "ok_2", "ok_3"]),  # literal: LIKE's wildcard is escaped
        ({"q": "%"}, []),
        ({"status": "stale,unhealthy"}, ["gone", "sick"]),
        ({"status": "healthy"}, ["ok_1", "ok_2", "ok_3"]),
        ({"capability": "queue"}, ["ok_2", "sick", "slow"]),  # exact: not "Queue"
        ({"capability": "cron", "status": "stale"}, ["gone"]),
        ({"capability": "que"}, []),
        ({"id": "gone"}, ["gone"]),  # exact, stale or not
        ({"id": "ok"}, []),
    ],
)
def test_fleet_filters(client, mixed_fleet, params, expected):
    page = _page(client, **params)
    assert _ids(page) == expected
    assert page["matching"] == len(expected)
    assert page["totalActive"] + page["totalStale"] == 6  # counts ignore the filters


def test_fleet_filters_by_region_exactly(client, clock, make_daemon, beat):
    for daemon_id, region in [("e1", "eu-west"), ("e2", "eu-west"), ("u1", "us-east"), ("n1", None)]:
        make_daemon(daemonId=daemon_id, region=region)
    clock.advance(45)
    assert beat("e2", status="degraded").status_code == 200
    clock.advance(30)  # e1, u1 and n1 went stale; e2 is live
    assert _ids(_page(client, region="eu-west")) == ["e1", "e2"]
    assert _ids(_page(client, region="eu-west", status="stale")) == ["e1"]
    assert _ids(_page(client, region="eu-west", sort="status", limit=1)) == ["e1"]
    assert _ids(_page(client, region="us-east")) == ["u1"]
    assert _ids(_page(client, region="EU-WEST")) == []  # exact, as /health?region= reads it
    assert _ids(_page(client, region="eu")) == []
    page = _page(client, region="nowhere")
    assert (page["matching"], page["totalActive"] + page["totalStale"]) == (0, 4)
    # The region is in every daemon's state, null without one.
    assert {d["daemonId"]: d["region"] for d in _page(client)["daemons"]}["n1"] is None


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"status": "asleep"}, "status"),
        ({"status": ""}, "status"),
        ({"q": ""}, "q"),
        ({"id": "bad id"}, "id"),
        ({"q": "x" * 129}, "q"),
        ({"capability": "a\nb"}, "capability"),
        ({"region": ""}, "region"),
        ({"region": "eu west"}, "region"),
        ({"region": "r" * 65}, "region"),
        ({"region": "-eu"}, "region"),
        ({"sort": "age"}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "nonsense"}, "cursor"),
        ({"cursor": "WyJpZCIsIDAsICJ4Il0", "sort": "status"}, "cursor"),  # an id-sort cursor
    ],
)
def test_bad_fleet_parameters_are_400_naming_them(client, params, name):
    response = client.get("/api/daemons", query_string=params, headers=HEADERS)
    assert response.status_code == 400
    assert list(response.get_json()["details"]) == [name]


def test_a_cursor_naming_no_place_in_the_order_is_400(client, mixed_fleet):
    forged = base64.urlsafe_b64encode(json.dumps(["status", 10**30, "ok_1"]).encode()).decode()
    response = client.get("/api/daemons", query_string={"sort": "status", "cursor": forged}, headers=HEADERS)
    assert response.status_code == 400
    assert list(response.get_json()["details"]) == ["cursor"]
