"""GET /api/daemons/history: a few daemons' strips, uptime and tasks per slot, in one read."""

from __future__ import annotations

import pytest

from tests.support.api import HEADERS
from tests.support.console import watcher_tick

PERIOD = {"from": "2026-01-25T12:00:00Z", "to": "2026-01-25T16:00:00Z", "slots": "4"}  # hour slots


def _history(client, **params):
    response = client.get("/api/daemons/history", query_string=params, headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _beat_for(clock, beat, daemon_id, seconds, **fields):
    """Heartbeats every 30 s for ``seconds``, ending with one at the end."""
    for _ in range(seconds // 30):
        clock.advance(30)
        assert beat(daemon_id, **fields).status_code == 200


def test_each_slot_shows_the_worst_of_what_happened_in_it(app, clock, client, make_daemon, beat):
    make_daemon(daemonId="worker")  # 12:00
    make_daemon(daemonId="retired")
    clock.advance(30)
    assert client.delete("/api/daemon/retired", headers=HEADERS).status_code == 200
    _beat_for(clock, beat, "worker", 1800 - 30, tasksProcessed=0)
    # 12:30: degraded for half an hour, 10 tasks (2 failed)
    _beat_for(clock, beat, "worker", 1800 - 30, status="degraded", tasksProcessed=10, tasksFailed=2)
    # 12:59:30: healthy again, then silent: down from 13:00:30
    assert beat("worker", status="healthy", tasksProcessed=10, tasksFailed=2).status_code == 200
    clock.advance(2 * 3600 + 30)
    watcher_tick(app)  # samples the task counts into their minutes, as the running watcher does
    # 15:00: back
    make_daemon(daemonId="worker")
    clock.advance(30)  # now 15:00:30; the last slot runs into the future

    found = _history(client, ids="worker,retired,newcomer,worker", **PERIOD)
    assert found["from"] == "2026-01-25T12:00:00Z" and found["to"] == "2026-01-25T16:00:00Z"
    assert found["slotSeconds"] == 3600
    worker, retired, newcomer = found["daemons"]  # in the order asked, without the repeat
    assert worker["daemonId"] == "worker"
    # 12–13: up, then degraded; 13–14: 30 s up, then down; 14–15: down; 15–16: up (so far).
    assert worker["slots"] == ["degraded", "down", "down", "up"]
    assert worker["uptime"]["incidents"] == 1
    assert worker["uptime"]["downSeconds"] == 2 * 3600 - 30
    assert worker["tasks"]["tasks"] == 10 and worker["tasks"]["errorRate"] == 0.2
    assert worker["taskSlots"] == [
        {"tasks": 10, "failedTasks": 2}, {"tasks": 0, "failedTasks": 0},
        {"tasks": 0, "failedTasks": 0}, {"tasks": 0, "failedTasks": 0},
    ]
    # Deregistered at 12:00:30: planned downtime (worse than up, so its slot shows it), not down.
    assert retired["slots"] == ["planned", "planned", "planned", "planned"]
    assert retired["uptime"]["uptimeRatio"] == 1.0
    # No history: nothing to show, and not an error in a batch.
    assert newcomer == {
        "daemonId": "newcomer", "slots": [None] * 4, "uptime": None,
        "tasks": {"tasks": 0, "failedTasks": 0, "errorRate": None, "avgResponseTimeMs": None},
        "taskSlots": [{"tasks": 0, "failedTasks": 0}] * 4,
    }


def test_a_slot_before_the_first_registration_is_empty(clock, client, make_daemon):
    clock.advance(3 * 3600 + 1800)  # registers at 15:30, asked at 16:00
    make_daemon(daemonId="late")
    clock.advance(1800)
    late = _history(client, ids="late", **PERIOD)["daemons"][0]
    assert late["slots"] == [None, None, None, "down"]  # up 60 s, then silent


def test_default_period_is_24_hours_in_half_hour_slots(clock, client, make_daemon):
    make_daemon(daemonId="worker")
    clock.advance(30)
    found = _history(client, ids="worker")
    assert found["slotSeconds"] == 1800 and len(found["daemons"][0]["slots"]) == 48
    assert found["daemons"][0]["slots"][-1] == "up"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "ids"),
        ({"ids": ""}, "ids"),
        ({"ids": "a,,b"}, "ids"),
        ({"ids": ",".join(f"d{i}" for i in range(101))}, "ids"),
        ({"ids": "bad id"}, "ids"),
        ({"ids": "a", "slots": "0"}, "slots"),
        ({"ids": "a", "slots": "289"}, "slots"),
        ({"ids": "a", "window": "1y"}, "window"),
    ],
)
def test_bad_history_parameters_are_400_naming_them(client, params, name):
    response = client.get("/api/daemons/history", query_string=params, headers=HEADERS)
    assert response.status_code == 400
    assert list(response.get_json()["details"]) == [name]
