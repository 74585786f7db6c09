"""A heartbeat carrying tasksFailed and taskTimeMs against one without, side by side, on Postgres.

    .venv/bin/python bench/heartbeat_update.py [--calls 2000] [--repeats 7]     # ~1-2 minutes

The task counters' contract: heartbeat throughput with the two fields within 5 %
of without. In one process, on a scratch database of 10,000 daemons, heartbeats
with and without the fields are timed interleaved (so the machine's load falls on
both alike) at two levels: the database call as the service makes it
(``service.heartbeat()`` from connect to close: one UPDATE on the driver
connection) and the whole request through the real app (Flask's test client,
rate limit on memory://). Prints CPU and wall microseconds per heartbeat
(medians), heartbeats per second of one process, and the ratio with / without.
Under gunicorn and wrk: ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from heartbeat_cpu import DAEMONS, bench_app, body, heartbeat_requests, measure_all  # noqa: E402
from seed import insert_daemons, libpq_url  # noqa: E402

from tests.support.postgres import migrate_with_alembic, scratch_database  # noqa: E402

CONTRACT = 1.05  # a heartbeat with the fields may take at most this much longer than one without


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--daemons", type=int, default=DAEMONS, help="daemons in the database (at most 10,000)")
    args = parser.parse_args()
    # As under gunicorn: request metrics in files shared by workers (set before the app is imported).
    metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    key = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
        sa_url = stack.enter_context(scratch_database("bench"))
        migrate_with_alembic(sa_url)
        insert_daemons(libpq_url(sa_url), args.daemons)

        from app.registry import service
        from app.registry.schemas import HeartbeatIn, parse_body
        from app.store.engine import build_engine

        engine = build_engine(sa_url, timeout=3)
        stack.callback(engine.dispose)
        app = bench_app(sa_url, key, storage="memory://", prefix=f"bench-{secrets.token_hex(6)}")
        ttl = timedelta(seconds=86400)
        layers: list[tuple[str, str, Callable[[int], object]]] = []
        for fields in (False, True):
            raw = [body(i, task_fields=fields) for i in range(args.daemons)]
            beats = [parse_body(HeartbeatIn, b) for b in raw]

            def database_call(i: int, beats=beats) -> None:
                with engine.connect() as conn:
                    assert service.heartbeat(conn, beats[i % len(beats)], now=datetime.now(UTC), ttl=ttl)

            named = "with tasksFailed, taskTimeMs" if fields else "without"
            layers.append((f"db/{fields}", f"service.heartbeat(), connect to close: {named}", database_call))
            requests = heartbeat_requests(app, key, raw)
            layers.append((f"http/{fields}", f"whole request, real app: {named}", requests))
        print(f"{args.repeats} x {args.calls} heartbeats per line, interleaved; median of the runs", flush=True)
        print(f"  {'':<66} {'CPU us':>8} {'wall us':>8}")
        results = measure_all(layers, args.calls, args.repeats)

    print(f"\n{'heartbeat':<34} {'without':>10} {'with':>10} {'with/without':>13}")
    for level, label in (("db", "database call"), ("http", "whole request")):
        without, with_fields = results[f"{level}/False"], results[f"{level}/True"]
        for column, what in enumerate(("CPU us", "wall us")):
            before, after = without[column], with_fields[column]
            print(f"{label + ', ' + what:<34} {before:>10.1f} {after:>10.1f} {after / before:>12.3f}x")
        wall_without, wall_with = without[1], with_fields[1]
        print(f"{label + ', per second':<34} {1e6 / wall_without:>10.0f} {1e6 / wall_with:>10.0f} "
              f"{wall_without / wall_with:>12.3f}x")
    # The contract is about throughput: whole heartbeats per second, with the fields against without.
    throughput = results["http/False"][1] / results["http/True"][1]
    verdict = "within" if throughput >= 1 / CONTRACT else "NOT within"
    print(f"\nthroughput with the fields: {throughput:.3f}x of without, {verdict} the contract's 5 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
