"""Fixtures for uptime questions: daemons kept alive by a moved clock, and the uptime API
(and its reader, which the task-metrics API shares)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.api import HEADERS
from tests.support.clocks import START


def iso(seconds: float) -> str:
    """The wire timestamp ``seconds`` after the test clock's START."""
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def alive(clock, beat):
    """Keep daemon(s) beating every 30 s until the clock reaches ``until`` seconds."""

    def run(until: float, *daemon_ids: str, **beat_fields) -> None:
        ids = daemon_ids or ("daemon_macmini_1",)
        while (clock.now() - START).total_seconds() + 30 <= until:
            clock.advance(30)
            for daemon_id in ids:
                assert beat(daemon_id, **beat_fields).status_code == 200
        clock.advance(until - (clock.now() - START).total_seconds())

    return run


def period_reader(client, question: str):
    """GET /api/daemon/<question> (the fleet) or /api/daemon/<id>/<question> (one daemon):
    ``question`` is ``uptime`` or ``metrics``; returns the body after checking the status."""

    def get(daemon_id: str | None = None, expect: int = 200, **params):
        path = f"/api/daemon/{daemon_id}/{question}" if daemon_id else f"/api/daemon/{question}"
        response = client.get(path, query_string=params, headers=HEADERS)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    return get


@pytest.fixture
def uptime(client):
    return period_reader(client, "uptime")
