"""The heartbeat's UPDATE with and without the task counters, on Postgres, statement by statement.

    .venv/bin/python bench/heartbeat_update.py [--daemons 10000] [--calls 2000] [--rounds 7]

Runs the service's prebuilt heartbeat UPDATE on a raw psycopg connection in
autocommit (as PostgresBackend does), alternating heartbeats that carry
tasksFailed and taskTimeMs with heartbeats that do not, and prints the median
wall time per statement (client and Postgres on this machine). The task
counters' contract: a heartbeat with the new fields within 5 % of one without.
Uses a scratch database on the Postgres named by TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402
from task_metrics import SEED  # noqa: E402

from app.registry import service  # noqa: E402
from app.store.engine import build_engine  # noqa: E402
from tests.support.postgres import migrate, scratch_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sql = service._BEAT_SAME_STATUS.compiled(postgresql.dialect())[0]
    with scratch_database("bench_heartbeat_update") as url:
        migrate(url)
        engine = build_engine(url, timeout=60)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            daemons_only = SEED.split(";")[0]
            conn.execute(text(daemons_only), {"now": now + timedelta(days=30), "daemons": args.daemons})
            conn.execute(text("ANALYZE"))
        engine.dispose()
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:

            def run(fields: bool) -> float:
                started = time.perf_counter()
                for i in range(args.calls):
                    params = {
                        "beat_daemon_id": f"daemon_{i % args.daemons:05d}",
                        "now": now,
                        "new_expires_at": now + timedelta(seconds=60),
                        "new_reported_heartbeat_at": now,
                        "new_status": "healthy",
                        "new_tasks_processed": i,
                        "new_current_task": "evt",
                        "new_tasks_failed": i // 10 if fields else None,
                        "new_task_time_ms": i * 12.5 if fields else None,
                    }
                    assert conn.execute(sql, params).rowcount == 1
                return (time.perf_counter() - started) / args.calls * 1e6

            results: dict[bool, list[float]] = {False: [], True: []}
            for round_number in range(args.rounds):
                for fields in (False, True) if round_number % 2 else (True, False):
                    results[fields].append(run(fields))
    without, with_fields = (statistics.median(results[f]) for f in (False, True))
    print(f"heartbeat UPDATE without the task fields: median {without:.1f} us")
    print(f"heartbeat UPDATE with tasksFailed and taskTimeMs: median {with_fields:.1f} us "
          f"({with_fields / without:.3f}x; contract: within 5 %)")


if __name__ == "__main__":
    main()
