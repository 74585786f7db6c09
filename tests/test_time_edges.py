"""Times at the calendar's edges, with any offset, are a 400 naming the field or parameter.

Accepted: 0001-01-02T00:00:00Z up to, not including, 9999-12-31T00:00:00Z. The
day kept free at each end is what an offset, or a Postgres session in another
time zone, can add or take away without leaving the calendar.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app import create_app
from app.http.context import database
from app.http.openapi.document import document
from app.registry.schemas import TIMESTAMP_PATTERN
from config import Settings
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration
from tests.support.postgres import migrate, scratch_database
from tests.support.unavailable import skip_or_fail_when_unavailable

RANGE_RULE = "must be from 0001-01-02T00:00:00Z up to, not including, 9999-12-31T00:00:00Z"
DAEMON = "daemon_macmini_1"
VALID_BODIES = {
    "/api/daemon/register": registration(),
    "/api/daemon/heartbeat": heartbeat_body(),
    "/api/maintenance": {"from": "2026-01-25T12:00:00Z", "to": "2026-01-25T13:00:00Z", "reason": "deploy"},
}
# Within a day of either end of the calendar in UTC, whatever the offset says.
EDGES = [
    *(f"0001-01-01T00:00:00{offset}" for offset in ("Z", "+00:00", "-00:00", "+01:00", "-01:00", "+23:59", "-23:59")),
    *(f"0001-01-01T23:59:59.999999{offset}" for offset in ("Z", "+00:00", "+01:00", "+23:59")),
    *(f"9999-12-31T00:00:00{offset}" for offset in ("Z", "+00:00", "-00:00", "-01:00", "-23:59")),
    *(f"9999-12-31T23:59:59.999999{offset}" for offset in ("Z", "+01:00", "-01:00", "+23:59", "-23:59")),
    "0001-01-02T00:00:00+00:01",
    "9999-12-30T23:00:00-01:00",
]
JUST_INSIDE = ["0001-01-02T00:00:00Z", "9999-12-30T23:59:59.999999Z"]


def _body_timestamp_fields() -> list[tuple[str, str]]:
    """(path, field) for every body field the OpenAPI document describes as a timestamp."""
    spec = document()
    found = []
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if "requestBody" in operation:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                model = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
                found += [
                    (path, name)
                    for name, schema in model["properties"].items()
                    if schema.get("pattern") == TIMESTAMP_PATTERN
                ]
    return found


TIMESTAMP_FIELDS = _body_timestamp_fields()
# A maintenance window's times obey the window's rules too (never the past, at most 31 days),
# so only the daemons' timestamps are stored exactly as sent.
STORED_AS_SENT = [(path, field) for path, field in TIMESTAMP_FIELDS if path != "/api/maintenance"]
PERIOD_PATHS = ["/api/daemon/uptime", f"/api/daemon/{DAEMON}/uptime"]


def _stored(client, field: str) -> str | None:
    state = client.get(f"/api/daemon/{DAEMON}", headers=HEADERS).get_json()
    return state["registeredAt" if field == "registeredAt" else "reportedLastHeartbeat"]


def test_the_document_describes_every_body_timestamp():
    assert set(TIMESTAMP_FIELDS) == {
        ("/api/daemon/register", "registeredAt"),
        ("/api/daemon/heartbeat", "lastHeartbeat"),
        ("/api/maintenance", "from"),
        ("/api/maintenance", "to"),
    }


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize(("path", "field"), TIMESTAMP_FIELDS)
def test_a_body_timestamp_at_either_end_of_the_calendar_is_400_naming_it(
    client, make_daemon, path, field, edge
):
    make_daemon()
    response = client.post(path, json={**VALID_BODIES[path], field: edge}, headers=HEADERS)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["details"] == {field: RANGE_RULE}


@pytest.mark.parametrize("value", JUST_INSIDE)
@pytest.mark.parametrize(("path", "field"), STORED_AS_SENT)
def test_a_body_timestamp_just_inside_the_range_is_stored_and_read_back(
    client, make_daemon, path, field, value
):
    make_daemon()
    response = client.post(path, json={**VALID_BODIES[path], field: value}, headers=HEADERS)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    assert _stored(client, field) == value
    for read in ("/api/daemons", "/api/daemon/health", "/api/events"):
        assert client.get(read, headers=HEADERS).status_code == 200


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
ANY_OFFSET = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
ANY_INSTANT = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 3)),
    st.datetimes(min_value=datetime(9999, 12, 29), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.datetimes(),
)


@pytest.mark.parametrize(
    ("field", "value", "answer"),
    [
        ("from", JUST_INSIDE[0], 201),  # long past: the window starts now
        ("to", JUST_INSIDE[1], 400),  # far too long a window
    ],
)
def test_a_window_time_just_inside_the_range_meets_the_window_rules(client, field, value, answer):
    body = {**VALID_BODIES["/api/maintenance"], field: value}
    response = client.post("/api/maintenance", json=body, headers=HEADERS)
    assert response.status_code == answer, response.get_data(as_text=True)
    if answer == 400:
        assert set(response.get_json()["details"]) == {field}
    else:
        assert response.get_json()["from"] == "2026-01-25T12:00:00Z"


@PROPERTY
@given(place=st.sampled_from(STORED_AS_SENT), local=ANY_INSTANT, offset=ANY_OFFSET)
def test_any_body_timestamp_is_stored_exactly_or_refused_naming_it(client, place, local, offset):
    path, field = place
    value = local.replace(tzinfo=offset).isoformat()
    client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    response = client.post(path, json={**VALID_BODIES[path], field: value}, headers=HEADERS)
    if response.status_code == 400:
        assert response.get_json()["details"] == {field: RANGE_RULE}
        return
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    stored = datetime.fromisoformat(_stored(client, field))
    assert stored == datetime.fromisoformat(value)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("to=0001-01-01T00:00:00Z", "to"),
        ("to=0001-01-01T23:59:59%2B01:00", "to"),
        ("to=0001-01-01T23:59:59-01:00", "window"),
        ("from=0001-01-01T12:00:00Z&to=0001-01-03T00:00:00Z", "from"),
        ("from=9999-12-30T00:00:00Z&to=9999-12-31T00:00:00Z", "to"),
        ("from=9999-12-30T00:00:00Z&to=9999-12-31T23:59:59.999999%2B23:59", "to"),
        ("from=9999-12-31T00:00:00Z", "from"),
        # The window, not its end, is what reaches off the calendar.
        ("to=0001-01-02T12:00:00Z", "window"),
        ("to=0001-01-02T00:00:00Z&window=1m", "window"),
        ("to=0001-06-01T00:00:00Z&window=400d", "window"),
    ],
)
@pytest.mark.parametrize("path", PERIOD_PATHS)
def test_a_period_reaching_off_the_calendar_is_400_naming_the_parameter(
    client, make_daemon, path, query, param
):
    make_daemon()
    response = client.get(f"{path}?{query}", headers=HEADERS)
    assert response.status_code == 400, response.get_data(as_text=True)
    details = response.get_json()["details"]
    assert list(details) == [param]
    if param == "window":
        assert details[param].startswith("reaches back before 0001-01-02T00:00:00Z;")
    else:
        assert details[param] == RANGE_RULE


@pytest.mark.parametrize(
    "query",
    [
        "to=0001-01-03T00:00:00Z",
        "to=0001-01-02T00:01:00Z&window=1m",
        "from=0001-01-02T00:00:00Z&to=0001-02-01T00:00:00Z",
        "from=9999-12-29T00:00:00Z&to=9999-12-30T23:59:59.999999Z",
    ],
)
def test_a_period_just_inside_the_calendar_is_answered(client, make_daemon, query):
    make_daemon()
    response = client.get(f"/api/daemon/uptime?{query}", headers=HEADERS)
    assert response.status_code == 200, response.get_data(as_text=True)


@PROPERTY
@given(
    to=st.one_of(st.none(), ANY_INSTANT),
    start=st.one_of(st.none(), ANY_INSTANT),
    offset=ANY_OFFSET,
    window=st.one_of(st.none(), st.sampled_from(["1m", "24h", "400d", "401d"])),
    path=st.sampled_from(PERIOD_PATHS),
)
def test_any_period_is_answered_or_refused_naming_a_parameter(client, to, start, offset, window, path):
    params = {
        name: value.replace(tzinfo=offset).isoformat()
        for name, value in (("to", to), ("from", start))
        if value is not None
    }
    if window is not None:
        params["window"] = window
    response = client.get(path, query_string=params, headers=HEADERS)
    assert response.status_code in (200, 400, 404), response.get_data(as_text=True)
    if response.status_code == 400:
        assert set(response.get_json()["details"]) <= params.keys() | {"window"}


@pytest.mark.parametrize("param", ["from", "to"])
@pytest.mark.parametrize("path", PERIOD_PATHS)
def test_an_unencoded_plus_in_a_query_offset_is_400_saying_to_encode_it(client, make_daemon, path, param):
    make_daemon()
    other = {"from": "to=2026-01-25T12:00:00Z", "to": "from=2026-01-25T08:00:00Z"}[param]
    # Written into the URL as a client would, unencoded: the '+' arrives as a space.
    response = client.get(f"{path}?{param}=2026-01-25T11:00:00+01:00&{other}", headers=HEADERS)
    assert response.status_code == 400
    message = response.get_json()["details"][param]
    assert "'+'" in message and "%2B" in message
    encoded = client.get(f"{path}?{param}=2026-01-25T11:00:00%2B01:00&{other}", headers=HEADERS)
    assert encoded.status_code in (200, 404), encoded.get_data(as_text=True)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12", "America/New_York"])
def test_edge_timestamps_read_back_from_postgres_in_any_session_time_zone(clock, zone):
    """Postgres renders timestamptz in the session's zone; the margin keeps both ends on the calendar."""
    with skip_or_fail_when_unavailable(), scratch_database() as url:
        migrate(url)
        app = create_app(Settings(database_url=url, admin_api_keys=(API_KEY,)), clock=clock)
        try:
            with database(app).engine.connect() as conn:
                conn.execute(text(f"ALTER DATABASE \"{conn.engine.url.database}\" SET timezone = '{zone}'"))
                conn.commit()
            database(app).engine.dispose()  # new sessions take the database's zone
            client = app.test_client()
            for daemon_id, value in zip(("low", "high"), JUST_INSIDE, strict=True):
                body = registration(daemonId=daemon_id, registeredAt=value)
                assert client.post("/api/daemon/register", json=body, headers=HEADERS).status_code == 201
                beat = heartbeat_body(daemonId=daemon_id, lastHeartbeat=value)
                assert client.post("/api/daemon/heartbeat", json=beat, headers=HEADERS).status_code == 200
                state = client.get(f"/api/daemon/{daemon_id}", headers=HEADERS).get_json()
                assert state["registeredAt"] == state["reportedLastHeartbeat"] == value
            for read in ("/api/daemons", "/api/daemon/health", "/api/events", "/api/daemon/uptime"):
                assert client.get(read, headers=HEADERS).status_code == 200, read
        finally:
            database(app).dispose()

