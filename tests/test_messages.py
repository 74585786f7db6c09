"""The messages for people: every type renders from its template, whatever it has to go on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from string import Template
from types import SimpleNamespace

import pytest

from app.alerts import messages
from config import ALERT_TYPES

AT = datetime(2026, 1, 25, 12, 30, tzinfo=UTC)


def event(**state):
    return SimpleNamespace(id=7, daemon_id="daemon_macmini_1", occurred_at=AT, state=state)


def test_every_alert_type_has_a_default_and_its_placeholders():
    assert set(messages.DEFAULTS) == set(messages.PLACEHOLDERS) == set(ALERT_TYPES)


HISTORY_TYPES = [t for t in ALERT_TYPES if t not in messages.ALERT_EVENT_FIGURES]


@pytest.mark.parametrize("alert_type", HISTORY_TYPES)
@pytest.mark.parametrize("previous", [None, SimpleNamespace(occurred_at=AT - timedelta(minutes=90))])
def test_a_template_using_every_placeholder_of_its_type_renders(alert_type, previous):
    """Whatever the event lacks reads 'unknown': a missing value must never stop the outbox."""
    everything = " ".join(f"${name}" for name in messages.PLACEHOLDERS[alert_type])
    template = messages.MessageTemplate(alert_type, "$daemonId", everything)
    rendered = messages.render(event(), alert_type, previous, (template,))
    assert "$" not in rendered["body"] and rendered["title"] == "daemon_macmini_1"
    if previous is not None and alert_type == "daemon.recovered":
        assert rendered["body"].endswith("2026-01-25 11:00:00 UTC 1 h 30 min")


def alert_event(**payload):
    return SimpleNamespace(id=3, alert_type="daemon.error_rate_high", subject="daemon_macmini_1",
                           occurred_at=AT, payload=payload)


@pytest.mark.parametrize("alert_type", sorted(messages.ALERT_EVENT_FIGURES))
def test_an_alert_event_template_using_every_placeholder_renders_even_without_figures(alert_type):
    everything = " ".join(f"${name}" for name in messages.PLACEHOLDERS[alert_type])
    template = messages.MessageTemplate(alert_type, "$alertType", everything)
    rendered = messages.render_alert_event(alert_event(), alert_type, (template,))
    assert "$" not in rendered["body"] and rendered["title"] == alert_type
    assert rendered["id"] == "alert_3" and "none" in rendered["body"]


def test_the_error_rate_alert_reads_as_percentages():
    figures = {"daemonId": "daemon_macmini_1", "errorRate": 0.125, "tasks": 40, "failedTasks": 5,
               "window": "15m", "threshold": 0.1, "recoveryThreshold": 0.08}
    rendered = messages.render_alert_event(alert_event(**figures), "daemon.error_rate_high")
    assert rendered["title"] == "Daemon daemon_macmini_1 is failing 12.5 % of its tasks"
    assert rendered["body"] == (
        "daemon_macmini_1 failed 5 of 40 tasks over the last 15m (12.5 %) by 2026-01-25 12:30:00 UTC: "
        "at or above the alert's threshold of 10 %.\nThe alert ends once the rate is at or below 8 %."
    )
    assert rendered["notifyType"] == "failure" and rendered["daemonId"] == "daemon_macmini_1"


def test_defaults_say_what_happened_in_words():
    state = {"status": "unhealthy", "currentTask": None, "tasksProcessed": 9, "version": "3.1",
             "lastHeartbeat": "2026-01-25T12:29:40Z"}
    rendered = messages.render(event(**state), "daemon.unhealthy", None)
    assert rendered == {
        "id": "evt_7",
        "type": "daemon.unhealthy",
        "daemonId": "daemon_macmini_1",
        "title": "Daemon daemon_macmini_1 is unhealthy",
        "body": "daemon_macmini_1 reported itself unhealthy at 2026-01-25 12:30:00 UTC.\n"
        "Current task: none. Tasks processed: 9. Last heartbeat: 2026-01-25 12:29:40 UTC. Version: 3.1.",
        "notifyType": "failure",
    }
    assert all(Template(t.title).is_valid() and Template(t.body).is_valid() for t in messages.DEFAULTS.values())


def test_times_read_to_the_second_whatever_the_clock_gave():
    """People read 12:29:40, not 12:29:40.156815: the service's clock keeps microseconds."""
    state = {"status": "degraded", "lastHeartbeat": "2026-01-25T12:29:40.156815Z"}
    stale = SimpleNamespace(id=7, daemon_id="daemon_macmini_1", state=state,
                            occurred_at=AT + timedelta(seconds=40, microseconds=999_999))
    rendered = messages.render(stale, "daemon.stale", None)
    assert rendered["title"] == "Daemon daemon_macmini_1 is down: no heartbeat since 2026-01-25 12:29:40 UTC"
    assert "Last heard from at 2026-01-25 12:29:40 UTC; stale since 2026-01-25 12:30:40 UTC." in rendered["body"]


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "0 s"), (59, "59 s"), (60, "1 min"), (200, "3 min 20 s"), (3600, "1 h"), (3660, "1 h 1 min"),
     (86405, "1 d"), (90061, "1 d 1 h"), (-3, "0 s")],
)
def test_durations_read_as_the_two_largest_units(seconds, words):
    assert messages.readable_duration(timedelta(seconds=seconds)) == words


def test_a_region_outage_names_its_silent_daemons():
    figures = {"region": "eu-west", "daemons": ["w1", "w2", "w3"], "silent": 3, "active": 2}
    event = SimpleNamespace(id=12, alert_type="region.disrupted", subject="eu-west", occurred_at=AT,
                            payload=figures)
    rendered = messages.render_alert_event(event, "region.disrupted")
    assert rendered["title"] == "Region eu-west is disrupted: 3 daemons fell silent together"
    assert rendered["body"].startswith(
        "3 daemons of region eu-west stopped sending heartbeats within one TTL, by "
        "2026-01-25 12:30:00 UTC: w1, w2, w3. 2 of its daemons are still heartbeating."
    )
    assert rendered["notifyType"] == "failure" and rendered["daemonId"] is None
