"""Uptime at scale: 1,000 daemons x 30 days of history with realistic flaps, on Postgres.

Prints how long the all-daemons 30-day uptime query takes (median of several
runs, the same code the API runs), the one-daemon query, and how many history
rows a day of steady heartbeats adds.

    .venv/bin/python bench/uptime.py [--daemons 1000] [--days 30] [--runs 7] [--windows 0]

With ``--windows N``, N one-hour maintenance windows spread over the period
(by turns the whole fleet, a capability every daemon has, and ten listed
daemons) make the timeline cut outages into planned and unplanned stretches.

Uses a scratch database on the Postgres named by TEST_POSTGRES_URL (default:
the local server), dropped at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text  # noqa: E402

from app.models import (  # noqa: E402
    daemon_events,
    daemons,
    maintenance_window_daemons,
    maintenance_windows,
)
from app.registry import service  # noqa: E402
from app.registry.schemas import HeartbeatIn, RegistrationIn  # noqa: E402
from app.store.engine import build_engine  # noqa: E402
from app.uptime import queries  # noqa: E402
from app.uptime.period import Period  # noqa: E402
from tests.support.api import heartbeat_body, registration  # noqa: E402
from tests.support.postgres import migrate, scratch_database  # noqa: E402
from timing import timed  # noqa: E402

TTL = timedelta(seconds=60)


def state(daemon_id: str, status: str) -> dict:
    return {"daemonId": daemon_id, "status": status}


def history(daemon_id: str, start: datetime, days: int, rng: random.Random) -> list[dict]:
    """A month of one daemon: a daily restart, status flaps, now and then an outage."""
    events = []

    def add(kind: str, at: datetime, status: str | None) -> None:
        events.append(
            {
                "daemon_id": daemon_id,
                "kind": kind,
                "occurred_at": at,
                "recorded_at": at,
                "status": status,
                "state": state(daemon_id, status or "healthy"),
                "alerted_at": at,
            }
        )

    add("registered", start, "healthy")
    for day in range(days):
        base = start + timedelta(days=day)
        for _ in range(rng.randint(0, 3)):  # degraded for a while, then healthy again
            at = base + timedelta(seconds=rng.randint(0, 80_000))
            add("status_changed", at, "degraded")
            add("status_changed", at + timedelta(seconds=rng.randint(30, 900)), "healthy")
        if rng.random() < 0.15:  # falls silent, comes back minutes later
            at = base + timedelta(seconds=rng.randint(0, 80_000))
            add("stale", at, None)
            add("registered", at + timedelta(seconds=rng.randint(60, 1800)), "healthy")
        add("registered", base + timedelta(seconds=82_000), "healthy")  # nightly deploy
    events.sort(key=lambda e: e["occurred_at"])
    for event, following in zip(events, events[1:]):  # as history.record chains them
        event["ended_at"] = following["occurred_at"]
    events[-1]["ended_at"] = None
    return events


def load(engine, count: int, days: int, now: datetime) -> int:
    rng = random.Random(7)
    start = now - timedelta(days=days)
    total = 0
    with engine.begin() as conn:
        for n in range(count):
            daemon_id = f"daemon_{n:05d}"
            events = history(daemon_id, start, days, rng)
            conn.execute(insert(daemon_events), events)
            total += len(events)
            conn.execute(
                insert(daemons).values(
                    daemon_id=daemon_id,
                    version="2.2",
                    capabilities=["queue"],
                    poll_interval=5000,
                    registered_at=now,
                    session_started_at=now,
                    last_heartbeat=now,
                    expires_at=now + TTL,
                    status="healthy",
                    tasks_processed=0,
                )
            )
        conn.execute(text("ANALYZE"))
    return total


def add_windows(engine, count: int, days: int, now: datetime) -> None:
    """``count`` one-hour windows spread over the period, the three selector kinds by turns."""
    start = now - timedelta(days=days)
    step = timedelta(days=days) / max(count, 1)
    with engine.begin() as conn:
        for n in range(count):
            at = start + step * n
            selector = ("fleet", "capability", "daemons")[n % 3]
            window_id = conn.execute(
                insert(maintenance_windows)
                .values(
                    starts_at=at,
                    ends_at=at + timedelta(hours=1),
                    reason="bench",
                    selector=selector,
                    capability="queue" if selector == "capability" else None,
                    created_at=at,
                )
                .returning(maintenance_windows.c.id)
            ).scalar_one()
            if selector == "daemons":
                conn.execute(
                    insert(maintenance_window_daemons),
                    [{"window_id": window_id, "daemon_id": f"daemon_{d:05d}"} for d in range(n % 50, 1000, 100)],
                )
        conn.execute(text("ANALYZE"))


def steady_day_rows(engine, now: datetime) -> int:
    """History rows a day of 30-second heartbeats adds to one daemon (registration aside)."""
    reg = RegistrationIn.model_validate(registration(daemonId="steady_one"))
    beat = HeartbeatIn.model_validate(heartbeat_body(daemonId="steady_one"))
    with engine.connect() as conn:
        service.register(conn, reg, now=now, ttl=TTL)
        before = conn.execute(select(func.count()).select_from(daemon_events)).scalar_one()
        conn.commit()
        for n in range(1, 2881):
            assert service.heartbeat(conn, beat, now=now + timedelta(seconds=30 * n), ttl=TTL)
        after = conn.execute(select(func.count()).select_from(daemon_events)).scalar_one()
    return after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--windows", type=int, default=0, help="maintenance windows in the period")
    parser.add_argument("--explain", action="store_true", help="print the query plan too")
    args = parser.parse_args()

    engine = None
    with scratch_database("bench_uptime") as url:
        try:
            migrate(url)
            engine = build_engine(url, timeout=30)
            now = datetime.now(UTC).replace(microsecond=0)
            started = time.perf_counter()
            rows = load(engine, args.daemons, args.days, now)
            add_windows(engine, args.windows, args.days, now)
            print(f"loaded {rows:,} history events for {args.daemons:,} daemons x {args.days} days "
                  f"and {args.windows} maintenance windows in {time.perf_counter() - started:.1f} s")
            period = Period(start=now - timedelta(days=args.days), end=now, now=now)
            with engine.connect() as conn:
                fleet = timed(lambda: queries.summaries(conn, period), args.runs)
                one = timed(lambda: queries.summaries(conn, period, ["daemon_00042"]), args.runs)
                intervals = timed(lambda: queries.down_intervals(conn, period, "daemon_00042"), args.runs)
                summaries = queries.summaries(conn, period)
            print(f"all-daemons {args.days}-day uptime: median {fleet * 1000:.1f} ms over {args.runs} runs "
                  f"({len(summaries)} daemons; target < 200 ms)")
            print(f"one daemon {args.days}-day uptime: median {one * 1000:.1f} ms; "
                  f"its down intervals: median {intervals * 1000:.1f} ms")
            print(f"history rows added by a day of steady heartbeats (2,880 beats): {steady_day_rows(engine, now)}")
            if args.explain:
                with engine.connect() as conn:
                    query = queries.summaries_query(period)
                    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
                    for (line,) in conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}")):
                        print(line)
        finally:
            if engine is not None:
                engine.dispose()


if __name__ == "__main__":
    main()
