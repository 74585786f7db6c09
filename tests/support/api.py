"""The service's wire as the tests speak it: admin keys and request bodies."""

from __future__ import annotations

import json
from typing import Any

API_KEY = "test-admin-key-0123456789"
ROTATED_KEY = "test-rotated-key-9876543210"
HEADERS = {"X-API-Key": API_KEY}


def registration(**overrides: Any) -> dict[str, Any]:
    body = {
        "daemonId": "daemon_macmini_1",
        "version": "2.2",
        "capabilities": ["queue", "cron"],
        "pollInterval": 5000,
        "registeredAt": "2026-01-25T12:00:00Z",
    }
    body.update(overrides)
    return body


def heartbeat_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "daemonId": "daemon_macmini_1",
        "status": "healthy",
        "tasksProcessed": 42,
        "currentTask": "evt_123",
        "lastHeartbeat": "2026-01-25T12:05:00Z",
    }
    body.update(overrides)
    return body


def padded_registration(daemon_id: str, size: int) -> bytes:
    """A valid registration of exactly ``size`` bytes (unknown fields are ignored)."""
    body = registration(daemonId=daemon_id, padding="")
    body["padding"] = "x" * (size - len(json.dumps(body)))
    data = json.dumps(body).encode()
    assert len(data) == size
    return data
