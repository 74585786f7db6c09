"""Bad input gets a clear 4xx JSON error that names the problem, never a 500 or HTML."""

from __future__ import annotations

import pytest

from tests.support.api import HEADERS, heartbeat_body, registration

REGISTER = "/api/daemon/register"
HEARTBEAT = "/api/daemon/heartbeat"


def _without(body: dict, field: str) -> dict:
    return {k: v for k, v in body.items() if k != field}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (_without(registration(), "daemonId"), "daemonId", "is required"),
        (_without(registration(), "version"), "version", "is required"),
        (_without(registration(), "capabilities"), "capabilities", "is required"),
        (_without(registration(), "pollInterval"), "pollInterval", "is required"),
        (_without(registration(), "registeredAt"), "registeredAt", "is required"),
        (registration(daemonId=""), "daemonId", "must be 1-128 characters"),
        (registration(daemonId="-leading-dash"), "daemonId", "must be 1-128 characters"),
        (registration(daemonId="has space"), "daemonId", "must be 1-128 characters"),
        (registration(daemonId="x" * 129), "daemonId", "must be 1-128 characters"),
        (registration(daemonId="bad\n"), "daemonId", "must be 1-128 characters"),
        (registration(daemonId=12), "daemonId", "must be a string"),
        (registration(daemonId="health"), "daemonId", "is reserved"),
        (registration(daemonId="uptime"), "daemonId", "is reserved"),
        (registration(version=""), "version", "must not be empty"),
        (registration(version="v" * 65), "version", "at most 64 characters"),
        (registration(capabilities="queue"), "capabilities", "must be a list"),
        (registration(capabilities=["queue", 3]), "capabilities[1]", "must be a string"),
        (registration(capabilities=["c"] * 65), "capabilities", "at most 64 items"),
        (registration(pollInterval="5000"), "pollInterval", "must be an integer"),
        (registration(pollInterval=True), "pollInterval", "must be an integer"),
        (registration(pollInterval=5000.5), "pollInterval", "must be an integer"),
        (registration(pollInterval=0), "pollInterval", "at least 1"),
        (registration(pollInterval=-5), "pollInterval", "at least 1"),
        (registration(pollInterval=10**12), "pollInterval", "at most 86400000"),
        (registration(registeredAt="2026-01-25T12:00:00"), "registeredAt", "with a time zone"),
        (registration(registeredAt="2026-01-25"), "registeredAt", "ISO-8601"),
        (registration(registeredAt="1700000000"), "registeredAt", "ISO-8601"),
        (registration(registeredAt=1700000000), "registeredAt", "must be a string"),
        (registration(registeredAt="2026-13-45T12:00:00Z"), "registeredAt", "ISO-8601"),
        (registration(registeredAt="0001-01-01T00:00:00+01:00"), "registeredAt", "must be from 0001-01-02"),
        (registration(registeredAt="yesterday"), "registeredAt", "ISO-8601"),
    ],
)
def test_bad_registration_is_400_naming_the_field(client, body, field, message):
    response = client.post(REGISTER, json=body, headers=HEADERS)
    assert response.status_code == 400
    error = response.get_json()
    assert field in error["error"]
    assert message in error["details"][field]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (_without(heartbeat_body(), "status"), "status", "is required"),
        (_without(heartbeat_body(), "tasksProcessed"), "tasksProcessed", "is required"),
        (_without(heartbeat_body(), "lastHeartbeat"), "lastHeartbeat", "is required"),
        (heartbeat_body(status="sleepy"), "status", "must be one of"),
        (heartbeat_body(status="HEALTHY"), "status", "must be one of"),
        (heartbeat_body(tasksProcessed="42"), "tasksProcessed", "must be an integer"),
        (heartbeat_body(tasksProcessed=True), "tasksProcessed", "must be an integer"),
        (heartbeat_body(tasksProcessed=-1), "tasksProcessed", "at least 0"),
        (heartbeat_body(tasksProcessed=2**53), "tasksProcessed", "at most"),
        (heartbeat_body(tasksProcessed=10**400), "tasksProcessed", "at most"),
        (heartbeat_body(currentTask=5), "currentTask", "must be a string"),
        (heartbeat_body(currentTask="t" * 257), "currentTask", "at most 256 characters"),
        (heartbeat_body(lastHeartbeat="2026-01-25 12:05:00Z"), "lastHeartbeat", "ISO-8601"),
    ],
)
def test_bad_heartbeat_is_400_naming_the_field(client, make_daemon, body, field, message):
    make_daemon()
    response = client.post(HEARTBEAT, json=body, headers=HEADERS)
    assert response.status_code == 400
    error = response.get_json()
    assert field in error["error"]
    assert message in error["details"][field]


def test_bad_heartbeat_changes_nothing(client, make_daemon, beat, read_health):
    make_daemon()
    beat(tasksProcessed=5)
    client.post(HEARTBEAT, json=heartbeat_body(tasksProcessed=-1), headers=HEADERS)
    assert read_health()["activeDaemons"][0]["tasksProcessed"] == 5


def test_every_bad_field_is_reported_at_once(client):
    body = {"daemonId": "ok", "status": "nope", "tasksProcessed": "1"}
    details = client.post(HEARTBEAT, json=body, headers=HEADERS).get_json()["details"]
    assert set(details) == {"status", "tasksProcessed", "lastHeartbeat"}


def test_unknown_fields_are_ignored(client, beat, read_health):
    body = registration(hostname="macmini", extra={"nested": [1, 2]})
    assert client.post(REGISTER, json=body, headers=HEADERS).status_code == 201
    assert beat(uptimeSeconds=12).status_code == 200
    assert "hostname" not in read_health()["activeDaemons"][0]


def test_null_current_task_is_accepted(make_daemon, beat):
    make_daemon()
    assert beat(currentTask=None).status_code == 200


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "Request body is not valid JSON"),
        (b"", "Request body is not valid JSON"),
        (b'{"daemonId": "a",}', "Request body is not valid JSON"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"text"', "Request body must be a JSON object"),
        (b"null", "Request body must be a JSON object"),
        (b"\xff\xfe", "Request body is not valid JSON"),
    ],
)
@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT])
def test_unusable_body_is_400(client, path, raw, message):
    response = client.post(path, data=raw, content_type="application/json", headers=HEADERS)
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(client, content_type):
    response = client.post(
        REGISTER, data=b'{"daemonId": "a"}', content_type=content_type, headers=HEADERS
    )
    assert response.status_code == 415
    assert response.get_json() == {"error": "Content-Type must be application/json"}


def test_json_with_charset_is_accepted(client):
    response = client.post(
        REGISTER,
        data=b'{"daemonId":"a","version":"1","capabilities":[],"pollInterval":1,'
        b'"registeredAt":"2026-01-25T12:00:00Z"}',
        content_type="application/json; charset=utf-8",
        headers=HEADERS,
    )
    assert response.status_code == 201


def test_oversized_body_is_413(client):
    body = registration(version="x" * (70 * 1024))
    response = client.post(REGISTER, json=body, headers=HEADERS)
    assert response.status_code == 413
    assert response.is_json
    assert "too large" in response.get_json()["error"]


def test_unknown_route_is_404_json(client):
    response = client.get("/api/daemons/nope", headers=HEADERS)
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not found: no endpoint at GET /api/daemons/nope"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", REGISTER, "POST"),
        ("put", HEARTBEAT, "POST"),
        ("post", "/api/daemon/health", "GET"),
        ("patch", "/api/daemon/daemon_1", "DELETE"),
    ],
)
def test_wrong_method_is_405_json_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path, headers=HEADERS)
    assert response.status_code == 405
    assert response.is_json
    assert "not allowed" in response.get_json()["error"]
    assert allowed in response.headers["Allow"]


def test_unexpected_error_is_generic_500_json(app, client, monkeypatch):
    from app.registry import service

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "health", explode)
    response = client.get("/api/daemon/health", headers={**HEADERS, "X-Request-ID": "req-1"})
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal server error", "requestId": "req-1"}
    assert response.headers["X-Request-ID"] == "req-1"


def test_a_500_without_a_request_id_gets_one_in_body_header_and_log(app, client, monkeypatch, caplog):
    from app.registry import service

    monkeypatch.setattr(service, "health", lambda *_a, **_k: 1 / 0)
    response = client.get("/api/daemon/health", headers=HEADERS)
    generated = response.get_json()["requestId"]
    assert len(generated) == 32 and response.headers["X-Request-ID"] == generated
    assert any(generated in record.getMessage() for record in caplog.records)


def test_request_id_is_echoed_when_sent_and_unsafe_ones_are_not(client):
    sent = client.get("/api/daemon/health", headers={**HEADERS, "X-Request-ID": "trace-7"})
    assert sent.headers["X-Request-ID"] == "trace-7"
    forged = client.get("/api/daemon/health", headers={**HEADERS, "X-Request-ID": "a b\tc"})
    assert "X-Request-ID" not in forged.headers
    # Nothing was logged for a plain success, so no id was made up for it.
    assert "X-Request-ID" not in client.get("/api/daemon/health", headers=HEADERS).headers
