"""Task metrics: tasks, failures, error rate and average task time, per daemon and for the fleet.

Every test runs on SQLite and on Postgres, with the clock moved, never slept.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import daemon_task_hours, daemon_task_minutes
from app.task_metrics import buckets
from tests.support.api import HEADERS
from tests.support.clocks import START
from tests.support.uptime_fixtures import period_reader


def iso(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def sample(engine, clock):
    """What the watcher does every tick: move the heartbeats' counts into buckets."""

    def run() -> int:
        with engine.connect() as conn:
            return buckets.sample(conn)

    return run


@pytest.fixture
def metrics(client):
    return period_reader(client, "metrics")


@pytest.fixture
def counts(beat):
    """A heartbeat carrying the counters (taskTimeMs and tasksFailed left out when None)."""

    def send(tasks: int, failed: int | None = None, ms: float | None = None, daemon_id: str = "daemon_macmini_1"):
        fields = {"tasksProcessed": tasks}
        if failed is not None:
            fields["tasksFailed"] = failed
        if ms is not None:
            fields["taskTimeMs"] = ms
        response = beat(daemon_id, **fields)
        assert response.status_code == 200, response.get_json()

    return send


def summary_of(body):
    return {k: body[k] for k in ("tasks", "failedTasks", "errorRate", "avgResponseTimeMs")}


def test_whole_sessions_are_exact_across_a_re_registration(clock, make_daemon, counts, metrics, sample):
    make_daemon()
    clock.advance(30)
    counts(40, 2, 10_000)
    clock.advance(30)
    counts(100, 5, 25_000)
    clock.advance(30)
    make_daemon()  # a new session: its counters start again at zero
    clock.advance(30)
    counts(20, 0, 2_000)
    clock.advance(30)
    counts(50, 0, 5_000)
    clock.advance(60)
    expected = {"tasks": 150, "failedTasks": 5, "errorRate": pytest.approx(5 / 150), "avgResponseTimeMs": 200.0}
    # Before the sampler ran (the live rows), after it, and once the daemon is gone.
    assert summary_of(metrics("daemon_macmini_1", window="1h")) == expected
    assert sample() == 1
    assert summary_of(metrics("daemon_macmini_1", window="1h")) == expected
    fleet = metrics(window="1h")
    assert fleet["fleet"] == expected
    assert fleet["daemons"] == [{"daemonId": "daemon_macmini_1", **expected}]
    assert (fleet["from"], fleet["to"]) == (iso(-3600 + 210), iso(210))


def test_a_counter_that_goes_down_is_a_reset_and_keeps_what_came_before(clock, make_daemon, counts, metrics):
    make_daemon()
    clock.advance(30)
    counts(30, 3, 3_000)
    clock.advance(30)
    counts(10, 1, 1_000)  # the daemon restarted its counting without registering
    clock.advance(30)
    counts(15, 1, 1_500)
    clock.advance(1)  # a moment after the last heartbeat
    assert summary_of(metrics("daemon_macmini_1", window="1h")) == {
        "tasks": 45, "failedTasks": 4, "errorRate": pytest.approx(4 / 45), "avgResponseTimeMs": 100.0,
    }


def test_one_counter_going_down_resets_all_three(clock, make_daemon, counts, metrics):
    make_daemon()
    clock.advance(30)
    counts(30, 3, 3_000)
    clock.advance(30)
    counts(30, 1, 3_000)  # failures went down: a restart, so 30 tasks and 3,000 ms are new too
    clock.advance(1)  # a moment after the last heartbeat
    assert summary_of(metrics("daemon_macmini_1", window="1h"))["tasks"] == 60


def test_lost_heartbeats_lose_nothing(clock, make_daemon, counts, metrics):
    make_daemon()
    clock.advance(30)
    counts(10, 1, 1_000)
    clock.advance(60)  # one heartbeat lost on the way (the next arrives just within the TTL)
    counts(40, 4, 8_000)
    clock.advance(1)  # a moment after the last heartbeat
    assert summary_of(metrics("daemon_macmini_1", window="1h")) == {
        "tasks": 40, "failedTasks": 4, "errorRate": 0.1, "avgResponseTimeMs": 200.0,
    }


def test_old_daemons_without_the_fields_keep_working(clock, make_daemon, counts, metrics, sample):
    make_daemon()
    clock.advance(30)
    counts(10)
    clock.advance(30)
    counts(25)
    sample()
    # Their tasks count, none failed as far as anyone knows, and there is no task time to average.
    clock.advance(1)  # a moment after the last heartbeat
    assert summary_of(metrics("daemon_macmini_1", window="1h")) == {
        "tasks": 25, "failedTasks": 0, "errorRate": 0.0, "avgResponseTimeMs": None,
    }


def test_the_average_leaves_out_daemons_that_report_no_task_time(clock, make_daemon, counts, metrics):
    make_daemon(daemonId="old")
    make_daemon(daemonId="new")
    clock.advance(30)
    counts(100, daemon_id="old")
    counts(10, 1, 500, daemon_id="new")
    clock.advance(1)  # a moment after the last heartbeat
    fleet = metrics(window="1h")["fleet"]
    assert fleet == {"tasks": 110, "failedTasks": 1, "errorRate": pytest.approx(1 / 110), "avgResponseTimeMs": 50.0}


def test_no_tasks_means_no_rates(clock, make_daemon, counts, metrics):
    make_daemon()
    clock.advance(30)
    counts(0, 0, 0)
    # A daemon without tasks is not in the fleet list, but has a history of its own.
    assert metrics(window="1h") == {
        "from": iso(-3600 + 30), "to": iso(30),
        "fleet": {"tasks": 0, "failedTasks": 0, "errorRate": None, "avgResponseTimeMs": None},
        "daemons": [],
    }
    body = metrics("daemon_macmini_1", window="1h", step="30m")
    assert summary_of(body) == {"tasks": 0, "failedTasks": 0, "errorRate": None, "avgResponseTimeMs": None}
    assert len(body["series"]) == 2


def test_a_daemon_without_history_in_the_period_is_404(clock, make_daemon, metrics):
    body = metrics("nobody", expect=404, window="1h")
    assert body == {"error": "No history for daemon 'nobody' in this period"}
    make_daemon()
    clock.advance(7200)
    metrics("daemon_macmini_1", expect=200, window="1h")  # down, but that is history
    metrics("daemon_macmini_1", expect=404, **{"from": iso(-7200), "to": iso(-3600)})


def test_a_window_that_cuts_a_session_is_exact_to_the_minute(clock, make_daemon, counts, metrics, sample):
    """One heartbeat every 30 s with 2 more tasks each; the watcher samples every 30 s too."""
    make_daemon()
    tasks = 0
    for _ in range(240):  # two hours
        clock.advance(30)
        tasks += 2
        counts(tasks, tasks // 10, tasks * 100.0)
        sample()
    # 12:10 to 13:35: 85 minutes = 170 beats, each finished 2 tasks.
    body = metrics("daemon_macmini_1", **{"from": iso(600), "to": iso(5700)}, step="1h")
    assert body["tasks"] == 340
    assert body["avgResponseTimeMs"] == 100.0
    # Steps start at from: 12:10-13:10 (120 beats), 13:10-13:35 (50 beats).
    assert [(p["from"], p["to"], p["tasks"]) for p in body["series"]] == [
        (iso(600), iso(4200), 240), (iso(4200), iso(5700), 100),
    ]
    # A period inside one hour and one across an hour's edge, from the fleet view.
    assert metrics(**{"from": iso(660), "to": iso(1260)})["fleet"]["tasks"] == 40
    assert metrics(**{"from": iso(3000), "to": iso(4500)})["fleet"]["tasks"] == 100


def test_series_steps_add_up_and_the_last_may_be_short(clock, make_daemon, counts, metrics, sample):
    make_daemon()
    clock.advance(-30)
    for minute in range(1, 91):  # a heartbeat at half past every minute, sampled at once
        clock.advance(60)
        counts(minute * 3, minute, minute * 30.0)
        sample()
    clock.advance(30)
    body = metrics("daemon_macmini_1", window="90m", step="40m")
    assert [(p["from"], p["to"], p["tasks"], p["failedTasks"]) for p in body["series"]] == [
        (iso(0), iso(2400), 120, 40), (iso(2400), iso(4800), 120, 40), (iso(4800), iso(5400), 30, 10),
    ]
    assert (body["tasks"], body["failedTasks"], body["avgResponseTimeMs"]) == (270, 90, 10.0)
    assert body["daemonId"] == "daemon_macmini_1"


def test_a_deregistered_or_reaped_daemon_keeps_what_it_counted(clock, make_daemon, counts, metrics, read_health, client):
    make_daemon(daemonId="leaves")
    make_daemon(daemonId="dies")
    clock.advance(30)
    counts(7, 1, 700, daemon_id="leaves")
    counts(9, 3, 900, daemon_id="dies")
    # Neither was sampled: deregistration and /health's reap must not drop their counts.
    assert client.delete("/api/daemon/leaves", headers=HEADERS).status_code == 200
    clock.advance(120)
    assert [d["daemonId"] for d in read_health()["stale"]] == ["dies"]
    daemons = {d["daemonId"]: d for d in metrics(window="1h")["daemons"]}
    assert (daemons["leaves"]["tasks"], daemons["leaves"]["failedTasks"]) == (7, 1)
    assert (daemons["dies"]["tasks"], daemons["dies"]["failedTasks"]) == (9, 3)


def test_storage_grows_with_time_not_heartbeats(clock, make_daemon, counts, sample, engine):
    make_daemon()
    for beat_number in range(1, 121):  # an hour of 30 s heartbeats, the watcher ticking every 2 s
        clock.advance(30)
        counts(beat_number)
        for _ in range(15):
            sample()
    with engine.connect() as conn:
        minutes = conn.execute(select(func.count()).select_from(daemon_task_minutes)).scalar_one()
        hours = conn.execute(select(func.count()).select_from(daemon_task_hours)).scalar_one()
    # 120 heartbeats, 1,800 samples: a bucket for each minute from 12:00 to 13:00, and for hours 12 and 13.
    assert (minutes, hours) == (61, 2)


def test_older_than_two_days_ends_count_by_whole_hours_and_prune_keeps_the_figures(
    clock, make_daemon, counts, metrics, sample, engine
):
    make_daemon()
    clock.advance(30)
    counts(10, 0, 100)
    sample()  # 12:00:30: minute 12:00, hour 12
    clock.advance(1800)
    make_daemon()
    counts(20, 0, 200)
    sample()  # 12:30:30: minute 12:30, hour 12
    window = {"from": iso(900), "to": iso(3600)}  # 12:15-13:00
    assert metrics("daemon_macmini_1", **window)["tasks"] == 20
    clock.advance(3 * 86400)
    with engine.connect() as conn:
        removed = buckets.prune(conn, now=clock.now(), before=clock.now() - timedelta(days=90))
    assert removed == 2  # both minutes; the hour stays
    # Three days on, the minutes are gone: 12:15 is inside hour 12, which starts before the period.
    assert metrics("daemon_macmini_1", **window)["tasks"] == 0
    assert metrics("daemon_macmini_1", **{"from": iso(0), "to": iso(900)})["tasks"] == 30


def test_bad_step_and_bad_counters_are_400s_naming_the_field(clock, make_daemon, beat, metrics):
    make_daemon()
    for step in ("0h", "1s", "x", "1m"):
        body = metrics("daemon_macmini_1", expect=400, window="30d", step=step)
        assert "step" in body["details"]
    assert "window" in metrics(expect=400, window="5y")["details"]
    for fields, field in [
        ({"tasksProcessed": 3, "tasksFailed": 4}, "tasksFailed"),
        ({"tasksFailed": -1}, "tasksFailed"),
        ({"tasksFailed": "1"}, "tasksFailed"),
        ({"taskTimeMs": -0.5}, "taskTimeMs"),
        ({"taskTimeMs": True}, "taskTimeMs"),
        ({"taskTimeMs": "12"}, "taskTimeMs"),
    ]:
        response = beat(**fields)
        assert response.status_code == 400, fields
        assert field in response.get_json()["details"], response.get_json()
    assert beat(tasksProcessed=3, tasksFailed=3, taskTimeMs=0.25).status_code == 200


def test_metrics_is_a_reserved_id(client):
    from tests.support.api import registration

    response = client.post("/api/daemon/register", json=registration(daemonId="metrics"), headers=HEADERS)
    assert response.status_code == 400
    assert "daemonId" in response.get_json()["details"]


def test_prometheus_counters_give_the_same_rates(clock, client, make_daemon, counts):
    from prometheus_client.parser import text_string_to_metric_families

    make_daemon()
    clock.advance(30)
    counts(40, 4, 8_000)

    def scrape() -> dict:
        text = client.get("/metrics", headers=HEADERS).get_data(as_text=True)
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.labels.get("daemon_id") == "daemon_macmini_1"
        }

    samples = scrape()
    assert samples["daemon_health_daemon_tasks_failed_total"] == 4
    assert samples["daemon_health_daemon_task_seconds_total"] == 8.0
    clock.advance(30)
    counts(100, 7, 20_000)
    later = scrape()
    # increase(): 60 tasks, 3 failed, 12 s, so 200 ms a task, as /api/daemon/metrics says.
    assert later["daemon_health_daemon_tasks_processed_total"] - samples["daemon_health_daemon_tasks_processed_total"] == 60
    assert later["daemon_health_daemon_tasks_failed_total"] - samples["daemon_health_daemon_tasks_failed_total"] == 3
    assert later["daemon_health_daemon_task_seconds_total"] - samples["daemon_health_daemon_task_seconds_total"] == 12.0


def test_the_sql_function_agrees_with_the_api(backend, clock, engine, make_daemon, counts, metrics, sample):
    """daemon_task_metrics(from, to) in psql gives the API's figures (Postgres only, like daemon_uptime)."""
    if backend != "postgresql":
        pytest.skip("daemon_task_metrics() is a Postgres function")
    from datetime import UTC, datetime

    from sqlalchemy import text

    # Near the database's now(): the function keeps minute buckets two days back from it.
    clock.current = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    make_daemon(daemonId="a")
    make_daemon(daemonId="b")
    for i in range(1, 200):  # 100 minutes, a beat every 30 s
        clock.advance(30)
        counts(i * 3, i, i * 50.0, daemon_id="a")
        counts(i, daemon_id="b")
        if i % 3 == 0:
            sample()
    start = clock.current - timedelta(minutes=99)
    periods = [
        (start, clock.current + timedelta(seconds=1)),
        (start + timedelta(minutes=7, seconds=20), start + timedelta(minutes=83)),
        (start + timedelta(minutes=3), start + timedelta(minutes=4)),
    ]
    for low, high in periods:
        period = {"from": low.isoformat().replace("+00:00", "Z"), "to": high.isoformat().replace("+00:00", "Z")}
        api = metrics(**period)["daemons"]
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM daemon_task_metrics(:low, :high)"), {"low": low, "high": high}).all()
        assert [
            {"daemonId": r.daemon_id, "tasks": r.tasks, "failedTasks": r.failed_tasks,
             "errorRate": r.error_rate, "avgResponseTimeMs": r.avg_response_time_ms}
            for r in rows
        ] == api
        assert api and all(d["tasks"] > 0 for d in api)
    # The README's queries for psql users run on the same data.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Task metrics", 1)[1].split("\n## ", 1)[0]
    per_daemon_query, fleet_query = re.findall(r"```sql\n(.*?)```", section, re.S)
    with engine.connect() as conn:
        worst_first = conn.execute(text(per_daemon_query)).all()
        fleet = conn.execute(text(fleet_query)).one()
    assert [r.daemon_id for r in worst_first] == ["a", "b"]  # b reports no failures
    assert fleet.tasks > 0 and 0 < fleet.error_rate < 1 and fleet.avg_response_time_ms == pytest.approx(50 / 3)


def test_the_watcher_samples_every_tick(app, clock, make_daemon, counts, engine):
    from app.alerts import watcher
    from app.alerts.lanes import Lanes
    from app.cli import watcher_of

    make_daemon()
    clock.advance(30)
    counts(12, 1, 600)
    with Lanes() as lanes:
        assert watcher.tick(watcher_of(app), lanes).sampled == 1
        assert watcher.tick(watcher_of(app), lanes).sampled == 0  # nothing new since
    with engine.connect() as conn:
        rows = conn.execute(select(daemon_task_minutes.c.bucket, daemon_task_minutes.c.tasks)).all()
    assert [(row.bucket, row.tasks) for row in rows] == [(START, 12)]  # the minute of the heartbeat
