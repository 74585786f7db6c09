"""Task metrics at scale: 1,000 daemons with a task bucket for every minute and hour, on Postgres.

Prints how long the fleet's 24 h summary takes (GET /api/daemon/metrics?window=24h)
and one daemon's 30-day series with hourly steps
(GET /api/daemon/<id>/metrics?window=30d&step=1h), medians of several runs of
the same code the API runs, and the same for daemon_task_metrics() in SQL; and
what the error-rate alert costs the watcher each tick (its 15-minute read).

    .venv/bin/python bench/task_metrics.py [--daemons 1000] [--days 30] [--runs 7]

The worst case for storage: every daemon finished tasks in every minute, so
each has 1,440 minute buckets a day (two days of them, as kept) and 24 hour
buckets a day. Uses a scratch database on the Postgres named by
TEST_POSTGRES_URL (default: the local server), dropped at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from app.alerts import error_rate  # noqa: E402
from app.store.engine import build_engine  # noqa: E402
from app.task_metrics import summaries  # noqa: E402
from app.uptime.period import Period  # noqa: E402
from tests.support.postgres import migrate, scratch_database  # noqa: E402
from timing import timed  # noqa: E402

SEED = """
INSERT INTO daemons (daemon_id, version, capabilities, poll_interval, registered_at, session_started_at,
                     last_heartbeat, expires_at, status, tasks_processed)
SELECT format('daemon_%s', lpad(n::text, 5, '0')), '2.2', '["queue"]', 5000, :now, :now, :now,
       :now + interval '60 seconds', 'healthy', 0
FROM generate_series(0, :daemons - 1) AS n;
INSERT INTO daemon_task_minutes (daemon_id, bucket, tasks, failed, task_ms, timed_tasks)
SELECT d.daemon_id, m, 4, (random() < 0.1)::int, 800, 4
FROM daemons d, generate_series(date_trunc('minute', :now - interval '2 days'), :now, interval '1 minute') AS m;
INSERT INTO daemon_task_hours (daemon_id, bucket, tasks, failed, task_ms, timed_tasks)
SELECT d.daemon_id, h, 240, 24, 48000, 240
FROM daemons d, generate_series(date_trunc('hour', :now - make_interval(days => :days)), :now, interval '1 hour') AS h;
ANALYZE;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    engine = None
    with scratch_database("bench_task_metrics") as url:
        try:
            migrate(url)
            engine = build_engine(url, timeout=120)
            # Half past a minute, 37 minutes into the hour: a 24 h window cuts two partial hours.
            now = datetime.now(UTC).replace(minute=37, second=30, microsecond=0) - timedelta(hours=1)
            started = time.perf_counter()
            with engine.begin() as conn:
                for statement in SEED.split(";"):
                    if statement.strip():
                        conn.execute(text(statement), {"now": now, "daemons": args.daemons, "days": args.days})
                minutes = conn.execute(text("SELECT count(*) FROM daemon_task_minutes")).scalar_one()
                hours = conn.execute(text("SELECT count(*) FROM daemon_task_hours")).scalar_one()
            print(f"loaded {minutes:,} minute and {hours:,} hour buckets for {args.daemons:,} daemons "
                  f"in {time.perf_counter() - started:.1f} s")
            day = Period(start=now - timedelta(hours=24), end=now, now=now)
            month = Period(start=now - timedelta(days=args.days), end=now, now=now)
            one = "daemon_00042"
            with engine.connect() as conn:
                fleet = timed(lambda: summaries.fleet(conn, day), args.runs)
                answer = summaries.fleet(conn, day)

                def daemon_series():
                    summaries.per_daemon(conn, month, one)  # the endpoint's history check
                    return summaries.series(conn, month, one, timedelta(hours=1))

                series = timed(daemon_series, args.runs)
                points = len(daemon_series()[1])
                sql = text("SELECT * FROM daemon_task_metrics(:low, :high)")
                fleet_sql = timed(lambda: conn.execute(sql, {"low": day.start, "high": day.end}).all(), args.runs)
            # The watcher's tick with the alert on: nothing changes after the first run, as on most ticks.
            rule = error_rate.Rule(threshold=0.05, recovery=0.04, window=timedelta(minutes=15), min_tasks=20)
            with engine.connect() as conn:
                alert_tick = timed(lambda: error_rate.evaluate(conn, rule, now=now), args.runs)
            print(f"fleet 24 h summary: median {fleet * 1000:.1f} ms over {args.runs} runs "
                  f"({len(answer['daemons'])} daemons, {answer['fleet']['tasks']:,} tasks; target < 100 ms)")
            print(f"daemon_task_metrics() over the same 24 h in SQL: median {fleet_sql * 1000:.1f} ms")
            print(f"one daemon {args.days}-day series, hourly steps: median {series * 1000:.1f} ms "
                  f"({points} points; target < 50 ms)")
            print(f"error-rate alert, one watcher tick (15 min window): median {alert_tick * 1000:.1f} ms")
        finally:
            if engine is not None:
                engine.dispose()


if __name__ == "__main__":
    main()
