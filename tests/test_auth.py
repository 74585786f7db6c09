"""X-API-Key on every admin endpoint, compared against each configured key."""

from __future__ import annotations

import logging

import pytest

from app.http.auth import ADMIN, KeyRing
from tests.support.api import API_KEY, ROTATED_KEY, heartbeat_body, registration

ENDPOINTS = [
    ("post", "/api/daemon/register", registration()),
    ("post", "/api/daemon/heartbeat", heartbeat_body()),
    ("get", "/api/daemon/health", None),
]


def _call(client, method, path, body, headers, **kwargs):
    return getattr(client, method)(path, json=body, headers=headers, **kwargs)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing API key: send it in the X-API-Key header"),
        ({"X-API-Key": ""}, "Missing API key: send it in the X-API-Key header"),
        ({"X-API-Key": "wrong-key-wrong-key"}, "Invalid API key"),
        ({"X-API-Key": API_KEY[:-1]}, "Invalid API key"),
        ({"X-API-Key": API_KEY + "x"}, "Invalid API key"),
        ({"X-API-Key": f"{API_KEY},{ROTATED_KEY}"}, "Invalid API key"),
        ({"Authorization": f"Bearer {API_KEY}"}, "Missing API key: send it in the X-API-Key header"),
    ],
)
def test_without_a_valid_key_is_401_json(client, method, path, body, headers, message):
    response = _call(client, method, path, body, headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": message}


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_key_in_query_string_is_not_accepted(client, method, path, body):
    response = _call(client, method, path, body, {}, query_string={"X-API-Key": API_KEY})
    assert response.status_code == 401


def test_unauthorised_register_writes_nothing(client, read_health):
    client.post("/api/daemon/register", json=registration(), headers={"X-API-Key": "nope-nope"})
    assert read_health()["totalActive"] == 0


@pytest.mark.parametrize("key", [API_KEY, ROTATED_KEY])
def test_every_configured_key_is_accepted(client, key):
    response = client.get("/api/daemon/health", headers={"X-API-Key": key})
    assert response.status_code == 200


def test_keys_never_reach_the_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.get("/api/daemon/health", headers={"X-API-Key": API_KEY})
    client.get("/api/daemon/health", headers={"X-API-Key": "guessed-key-123456"})
    assert API_KEY not in caplog.text
    assert "guessed-key-123456" not in caplog.text


def test_the_keyring_knows_every_key():
    def matches(supplied, keys):
        return KeyRing({ADMIN: keys}).identify(supplied).kind == ADMIN

    assert matches("b" * 20, ("a" * 20, "b" * 20))
    assert not matches("c" * 20, ("a" * 20, "b" * 20))
    assert not matches("", ("a" * 20,))
    assert not matches("é" * 10, ("a" * 20,))
