"""History grows with events, not heartbeats, and keeps what /health forgets."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from app.models import daemon_events
from tests.support.api import HEADERS, registration
from tests.support.clocks import START


def _events(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            select(daemon_events).order_by(daemon_events.c.occurred_at, daemon_events.c.id)
        ).all()
    return [(r.daemon_id, r.kind, r.occurred_at, r.status) for r in rows]


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_registration_is_recorded(make_daemon, engine):
    make_daemon()
    assert _events(engine) == [("daemon_macmini_1", "registered", _at(0), "healthy")]


def test_steady_heartbeats_add_no_history(clock, make_daemon, beat, engine):
    make_daemon()
    for _ in range(100):
        clock.advance(30)
        assert beat(tasksProcessed=1).status_code == 200
    assert len(_events(engine)) == 1


def test_status_change_is_recorded_once(clock, make_daemon, beat, engine):
    make_daemon()
    clock.advance(30)
    beat(status="degraded")
    clock.advance(30)
    beat(status="degraded")
    clock.advance(30)
    beat(status="healthy")
    assert [e[1:] for e in _events(engine)] == [
        ("registered", _at(0), "healthy"),
        ("status_changed", _at(30), "degraded"),
        ("status_changed", _at(90), "healthy"),
    ]


def test_stale_is_recorded_at_expiry_time_not_read_time(clock, make_daemon, beat, read_health, engine):
    make_daemon()
    clock.advance(20)
    beat()
    clock.advance(3600)  # nobody polls for an hour
    read_health()
    assert _events(engine)[-1][:3] == ("daemon_macmini_1", "stale", _at(80))


def test_register_over_expired_row_records_the_unread_stale_first(
    clock, client, make_daemon, engine
):
    make_daemon()
    clock.advance(500)
    client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    assert [e[1:3] for e in _events(engine)] == [
        ("registered", _at(0)),
        ("stale", _at(60)),
        ("registered", _at(500)),
    ]


def test_restart_while_live_records_no_stale(clock, client, make_daemon, engine):
    make_daemon()
    clock.advance(30)
    client.post("/api/daemon/register", json=registration(), headers=HEADERS)
    assert [e[1] for e in _events(engine)] == ["registered", "registered"]


def test_stale_event_keeps_the_last_state(clock, make_daemon, beat, read_health, engine):
    make_daemon()
    beat(status="unhealthy", tasksProcessed=17)
    clock.advance(61)
    read_health()
    with engine.connect() as conn:
        state = conn.execute(
            select(daemon_events.c.state).where(daemon_events.c.kind == "stale")
        ).scalar_one()
    assert (state["status"], state["tasksProcessed"]) == ("unhealthy", 17)


def test_each_event_ends_the_span_of_the_one_before(clock, client, make_daemon, beat, read_health, engine):
    make_daemon()
    clock.advance(30)
    beat(status="degraded")
    clock.advance(100)  # stale at 90
    read_health()
    make_daemon()
    with engine.connect() as conn:
        spans = conn.execute(
            select(daemon_events.c.kind, daemon_events.c.occurred_at, daemon_events.c.ended_at)
            .order_by(daemon_events.c.id)
        ).all()
    assert [tuple(s) for s in spans] == [
        ("registered", _at(0), _at(30)),
        ("status_changed", _at(30), _at(90)),
        ("stale", _at(90), _at(130)),
        ("registered", _at(130), None),
    ]
