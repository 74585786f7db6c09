"""Valid JSON a field cannot hold is a 400 naming the field, on both backends.

Postgres text and JSONB refuse U+0000, and an unpaired surrogate ("\\ud800",
a valid JSON escape) is not UTF-8, so no database can store it. The fields
and parameters come from the OpenAPI document, so a new one is covered the
day it is described.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.http.openapi.document import document
from tests.support.api import HEADERS, heartbeat_body, registration

DAEMON = "daemon_macmini_1"
VALID_BODIES = {
    "/api/daemon/register": registration(region="eu-west"),
    "/api/daemon/heartbeat": heartbeat_body(),
    "/api/leases/{name}": {"daemonId": DAEMON},
    # The whole fleet: a spoiled field adds the one selector it is.
    "/api/maintenance": {"from": "2026-01-25T12:00:00Z", "to": "2026-01-25T13:00:00Z", "reason": "deploy"},
}
VALID_QUERY_VALUES = {
    "window": "24h",
    "from": "2026-01-25T11:00:00Z",
    "to": "2026-01-25T12:00:00Z",
    "after": "0",
    "limit": "10",
    "step": "1h",
    "daemonId": DAEMON,
    "region": "eu-west",
    "q": "macmini",
    "id": "daemon_macmini_1",
    "status": "healthy",
    "capability": "queue",
    "sort": "status",
    "cursor": "WyJpZCIsIDAsICJkYWVtb25fbWFjbWluaV8xIl0",  # the id sort's cursor after daemon_macmini_1
    "ids": "daemon_macmini_1,daemon_macmini_2",
    "slots": "48",
    "order": "newest",
}
UNSTORABLE = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800"]
STORABLE_TEXT_RULE = "must not contain U+0000 (NUL) or unpaired surrogates"


def _body_text_fields() -> list[tuple[str, str, bool]]:
    """(path, field, free text?) for every string in every request body; a list's items as field[0]."""
    spec = document()
    found = []
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if "requestBody" not in operation:
                continue
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            model = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
            for name, schema in model["properties"].items():
                for option in schema.get("anyOf", [schema]):
                    if option.get("type") == "string":
                        found.append((path, name, _free_text(option)))
                    elif option.get("type") == "array" and option["items"].get("type") == "string":
                        found.append((path, f"{name}[0]", _free_text(option["items"])))
    return found


def _free_text(schema: dict[str, Any]) -> bool:
    """A string the service stores as given, as opposed to one a pattern or a list restricts."""
    return not ({"pattern", "enum", "const"} & schema.keys())


def _query_parameters() -> list[tuple[str, str, str]]:
    """(method, path, name) of every query parameter."""
    return [
        (method, path, parameter["name"])
        for path, operations in document()["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    ]


def _url(path: str) -> str:
    """``path`` with its parameters filled in: the registered daemon, a lease name."""
    return path.replace("{daemonId}", DAEMON).replace("{name}", "cron")


BODY_FIELDS = _body_text_fields()
FREE_TEXT_FIELDS = [(path, field) for path, field, free in BODY_FIELDS if free]


def test_the_document_describes_the_fields_this_file_covers():
    assert {field for _, field, _ in BODY_FIELDS} >= {
        "version", "capabilities[0]", "currentTask", "daemonId", "status", "registeredAt", "lastHeartbeat"
    }
    assert ("/api/daemon/heartbeat", "currentTask") in FREE_TEXT_FIELDS
    assert {("/api/maintenance", "reason"), ("/api/maintenance", "capability")} <= set(FREE_TEXT_FIELDS)
    assert {name for _, _, name in _query_parameters()} <= VALID_QUERY_VALUES.keys()


def _with(body: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    if field.endswith("[0]"):
        return {**body, field[:-3]: [value]}
    return {**body, field: value}


def _valid_value(body: dict[str, Any], field: str) -> str:
    if field.endswith("[0]"):
        return (body.get(field[:-3]) or [DAEMON])[0]
    return body.get(field) or "x"


def _post(client, path: str, body: dict[str, Any]):
    # ensure_ascii: NUL and surrogates travel as JSON escapes, the way a client's encoder sends them.
    raw = json.dumps(body, ensure_ascii=True)
    return client.post(_url(path), data=raw, content_type="application/json", headers=HEADERS)


@pytest.mark.parametrize("bad", UNSTORABLE, ids=ascii)
@pytest.mark.parametrize(("path", "field", "free_text"), BODY_FIELDS)
def test_unstorable_text_in_any_body_field_is_400_naming_it(
    client, make_daemon, path, field, free_text, bad
):
    before = make_daemon()
    valid = VALID_BODIES[path]
    spoiled = _valid_value(valid, field)
    response = _post(client, path, _with(valid, field, spoiled[:1] + bad + spoiled[1:]))
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()
    assert field in error["details"], error
    if free_text:
        assert STORABLE_TEXT_RULE in error["details"][field]
    # Nothing was half-written: the daemon is as it was registered, and no window opened.
    state = client.get(f"/api/daemon/{DAEMON}", headers=HEADERS).get_json()
    assert (state["version"], state["capabilities"], state["currentTask"]) == (
        before["version"], before["capabilities"], None
    )
    assert client.get("/api/maintenance", headers=HEADERS).get_json()["windows"] == []


@pytest.mark.parametrize("path", VALID_BODIES)
def test_a_surrogate_in_an_ignored_field_is_ignored_like_the_field(client, make_daemon, path):
    make_daemon()
    response = _post(client, path, {**VALID_BODIES[path], "futureField": "\ud800"})
    assert response.status_code in (200, 201), response.get_data(as_text=True)


@pytest.mark.parametrize(
    "raw",
    [b'{"version": "\xed\xa0\x80"}', b'{"version": "\\ud800"', b"\xff", b"[" * 5000 + b"]" * 5000],
    ids=["encoded-surrogate-bytes", "truncated", "not-utf8", "deeply-nested"],
)
def test_what_is_not_json_is_still_called_so(client, raw):
    response = client.post(
        "/api/daemon/register", data=raw, content_type="application/json", headers=HEADERS
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": "Request body is not valid JSON"}


TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=()),  # every code point, surrogates included
        st.sampled_from(["\x00", "\ud800", "\udfff"]),  # often, not one time in a million
    ),
    min_size=1,
    max_size=20,
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@PROPERTY
@given(place=st.sampled_from(FREE_TEXT_FIELDS), text=TEXT)
def test_any_text_in_a_free_text_field_is_stored_exactly_or_refused_naming_it(client, place, text):
    path, field = place
    client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    response = _post(client, path, _with(VALID_BODIES[path], field, text))
    if response.status_code == 400:
        assert field in response.get_json()["details"], response.get_json()
        return
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    if path == "/api/maintenance":
        stored = response.get_json()  # reason, capability: echoed as stored
    else:
        state = client.get(f"/api/daemon/{DAEMON}", headers=HEADERS).get_json()
        stored = {"version": state["version"], "capabilities[0]": state["capabilities"][0]}
        stored["currentTask"] = state["currentTask"]
    assert stored[field] == text


@pytest.mark.parametrize("spoiler", ["\x00", "\n", "\t", "\x7f"], ids=ascii)
@pytest.mark.parametrize(("method", "path", "name"), _query_parameters())
def test_a_control_character_in_any_query_parameter_is_400_naming_it(
    client, make_daemon, method, path, name, spoiler
):
    # A query string cannot carry a surrogate (percent-decoding makes bytes,
    # and bytes that are not UTF-8 become U+FFFD), so control characters it is.
    make_daemon()
    value = VALID_QUERY_VALUES[name]
    for spoiled in (spoiler + value, value + spoiler, value[:1] + spoiler + value[1:]):
        response = client.open(_url(path), method=method.upper(), query_string={name: spoiled}, headers=HEADERS)
        assert response.status_code == 400, (spoiled, response.get_data(as_text=True))
        assert name in response.get_json()["details"]
