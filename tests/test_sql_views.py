"""The SQL that people run in psql: views and daemon_uptime(), on real Postgres.

The README's queries are read from the README itself and run here, and the
SQL function must agree with the API on the same history.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app import create_app
from app.http.context import database
from config import Settings
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration
from tests.support.clocks import FrozenClock
from tests.support.postgres import migrate

README = Path(__file__).resolve().parent.parent / "README.md"
# Hours ago, so that every span is over before the database's now().
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
PERIOD_END = T0 + timedelta(hours=2)


def readme_queries() -> list[str]:
    section = README.read_text().split("## Uptime in SQL", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


@pytest.fixture
def history(postgres_database):
    """Two hours of fleet life on a scratch Postgres, written through the API."""
    migrate(postgres_database)
    clock = FrozenClock(T0)
    app = create_app(
        Settings(database_url=postgres_database, admin_api_keys=(API_KEY,)), clock=clock
    )
    client = app.test_client()
    with database(app).engine.begin() as conn:
        conn.execute(text(
            "DELETE FROM daemon_events; DELETE FROM daemons;"
            " DELETE FROM maintenance_window_daemons; DELETE FROM maintenance_windows"
        ))

    def post(path, body):
        assert client.post(f"/api/daemon/{path}", json=body, headers=HEADERS).status_code < 300

    for daemon_id in ["steady", "flappy", "retired"]:
        post("register", registration(daemonId=daemon_id))
    post("register", registration(daemonId="silent", capabilities=["batch"]))
    # Silent's outage (from a minute in) is planned from 10 to 50 minutes, by two
    # overlapping windows of two selector kinds.
    for start, end, selector in [(10, 40, {"daemonIds": ["silent"]}), (30, 50, {"capability": "batch"})]:
        window = {"from": (T0 + timedelta(minutes=start)).isoformat(),
                  "to": (T0 + timedelta(minutes=end)).isoformat(), "reason": "reboot", **selector}
        assert client.post("/api/maintenance", json=window, headers=HEADERS).status_code == 201
    for tick in range(1, 241):  # 30 s ticks for two hours
        clock.advance(30)
        post("heartbeat", heartbeat_body(daemonId="steady", status="degraded" if 40 < tick < 60 else "healthy"))
        if tick < 100:
            post("heartbeat", heartbeat_body(daemonId="retired"))
        if tick == 100:
            assert client.delete("/api/daemon/retired", headers=HEADERS).status_code == 200
        if tick in (20, 40, 60, 80, 100):
            post("register", registration(daemonId="flappy"))  # comes back, then falls silent
    engine = create_engine(postgres_database)
    yield app, client, engine
    engine.dispose()
    database(app).dispose()


def test_sql_uptime_agrees_with_the_api(history):
    app, client, engine = history
    api = client.get(
        "/api/daemon/uptime",
        query_string={"from": T0.isoformat(), "to": PERIOD_END.isoformat()},
        headers=HEADERS,
    ).get_json()["daemons"]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM daemon_uptime(:lo, :hi) ORDER BY daemon_id"),
            {"lo": T0, "hi": PERIOD_END},
        ).mappings().all()
    assert [r["daemon_id"] for r in rows] == [d["daemonId"] for d in api]
    for row, summary in zip(rows, api, strict=True):
        assert row["up_seconds"] == pytest.approx(summary["upSeconds"], abs=0.01)
        assert row["down_seconds"] == pytest.approx(summary["downSeconds"], abs=0.01)
        assert row["planned_down_seconds"] == pytest.approx(summary["plannedDownSeconds"], abs=0.01)
        assert row["degraded_seconds"] == pytest.approx(summary["statusSeconds"]["degraded"], abs=0.01)
        assert row["incidents"] == summary["incidents"]
    by_id = {d["daemonId"]: d for d in api}
    assert by_id["steady"]["uptimeRatio"] == 1.0
    assert by_id["steady"]["statusSeconds"]["degraded"] == 19 * 30
    assert by_id["retired"]["plannedDownSeconds"] == 2 * 3600 - 3000
    assert by_id["flappy"]["incidents"] == 6
    assert by_id["silent"]["plannedDownSeconds"] == 40 * 60
    assert by_id["silent"]["downSeconds"] == 2 * 3600 - 60 - 40 * 60
    assert by_id["silent"]["incidents"] == 1  # one outage, though a window cuts it in two


def test_readme_queries_answer_the_usual_questions(history):
    _app, _client, engine = history
    uptime_query, outages_query, flapping_query = readme_queries()
    with engine.connect() as conn:
        uptime = {r.daemon_id: r for r in conn.execute(text(uptime_query))}
        outages = conn.execute(text(outages_query)).all()
        flapping = conn.execute(text(flapping_query)).all()
    assert set(uptime) == {"steady", "flappy", "retired", "silent"}
    assert uptime["silent"].uptime_pct < 1  # silent since a minute after T0
    assert {r.daemon_id for r in outages} == {"steady", "flappy", "silent"}
    assert "retired" not in {r.daemon_id for r in outages}  # planned, not an outage
    with engine.connect() as conn:
        silent = conn.execute(text(
            "SELECT reason, planned, round(seconds) AS seconds, outage_started_at FROM daemon_outages"
            " WHERE daemon_id = 'silent' ORDER BY started_at"
        )).all()
    assert [tuple(r)[:3] for r in silent[:2]] == [("stale", False, 9 * 60), ("maintenance", True, 40 * 60)]
    assert {r.outage_started_at for r in silent} == {T0 + timedelta(seconds=60)}  # one outage
    assert [(r.reason, r.planned) for r in silent[2:]] == [("stale", False)]  # ongoing since
    assert [(r.daemon_id, r.outages) for r in flapping] == [("flappy", 6)]
