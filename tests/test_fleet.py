"""Read-only fleet views: any number of screens, and /health's stale report stays whole."""

from __future__ import annotations

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


@pytest.mark.parametrize(("params", "name"), [({"after": "-1"}, "after"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"limit": "501"}, "limit")])
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
