"""Where a heartbeat's CPU goes, layer by layer, measured in one process.

    .venv/bin/python bench/heartbeat_cpu.py [--calls 2000] [--repeats 5]

Why: under wrk (bench/run.py) req/s moves with whatever else runs on a shared
machine; this process's CPU time per call (time.process_time) moves much less.
Prints CPU and wall microseconds per call of each layer, and the differences;
bench/README.md lists the layers, docs/decisions.md what they showed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from seed import insert_daemons, libpq_url  # noqa: E402

from tests.support.postgres import migrate_with_alembic, scratch_database  # noqa: E402
from tests.support.redis_store import REDIS_URL, delete_redis_keys  # noqa: E402

DAEMONS = 10_000


def body(i: int, *, task_fields: bool = False) -> bytes:
    fields = {
        "daemonId": f"daemon_{i % DAEMONS:05d}",
        "status": "healthy",
        "tasksProcessed": i,
        "currentTask": f"evt_{i}",
        "lastHeartbeat": "2026-01-25T12:00:00Z",
    }
    if task_fields:  # what a daemon reporting failures and task time sends besides
        fields.update(tasksFailed=i // 10, taskTimeMs=i * 12.5)
    return json.dumps(fields, separators=(",", ":")).encode()


def bench_app(sa_url: str, key: str, *, storage: str, prefix: str, limiter: bool = True, clock=None):
    """The real app on the bench database: a day's TTL, a rate limit that counts but never refuses."""
    from app import create_app
    from config import settings_from_env

    env = {
        "ADMIN_API_KEY": key,
        "DATABASE_URL": sa_url,
        "DAEMON_TTL_SECONDS": "86400",
        "RATELIMIT_STORAGE_URI": storage,
        "RATELIMIT_KEY_PREFIX": prefix,
        "ADMIN_RATE_LIMIT": "100000000 per minute",
    }
    app = create_app(settings_from_env(env), clock=clock)
    if not limiter:  # for measuring only: unhook the rate limit (the service has no switch)
        hooks = app.before_request_funcs[None]
        hooks[:] = [hook for hook in hooks if not hook.__module__.startswith("flask_limiter")]
    return app


def heartbeat_requests(app, key: str, bodies: list[bytes]) -> Callable[[int], object]:
    """``call(i)``: POST the ``i``-th heartbeat body (cycling) through ``app``'s test client; must be 200."""
    client = app.test_client()
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    def call(i: int) -> None:
        response = client.post("/api/daemon/heartbeat", data=bodies[i % len(bodies)], headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code} {response.get_data()[:200]!r}")

    return call


def measure_all(
    layers: list[tuple[str, str, Callable[[int], object]]], calls: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """CPU and wall us per call of each layer: median of ``repeats`` runs of ``calls`` calls.

    The runs are interleaved (every layer once per repeat, the order rotating),
    so a change in the machine's load falls on all layers alike.
    """
    for _key, _label, call in layers:
        for i in range(min(200, calls)):  # warm-up: caches, prepared statements
            call(i)
    cpu: dict[str, list[float]] = {key: [] for key, _, _ in layers}
    wall: dict[str, list[float]] = {key: [] for key, _, _ in layers}
    for r in range(repeats):
        for key, _label, call in layers[r % len(layers) :] + layers[: r % len(layers)]:
            c0, w0 = time.process_time(), time.perf_counter()
            for i in range(calls):
                call(r * calls + i)
            cpu[key].append((time.process_time() - c0) / calls * 1e6)
            wall[key].append((time.perf_counter() - w0) / calls * 1e6)
    results = {}
    for key, label, _ in layers:
        results[key] = c, w = statistics.median(cpu[key]), statistics.median(wall[key])
        print(f"  {label:<66} {c:8.0f} {w:8.0f}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--task-fields", action="store_true", help="heartbeats carry tasksFailed and taskTimeMs")
    args = parser.parse_args()

    # Like gunicorn.conf.py: request metrics go to files shared by workers. Set
    # before the app (and so prometheus_client) is imported.
    metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    token = secrets.token_hex(6)
    prefix = f"bench-cpu-{token}"
    key = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        stack.callback(delete_redis_keys, REDIS_URL, prefix)
        sa_url = stack.enter_context(scratch_database("bench"))
        stack.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
        db_url = libpq_url(sa_url)
        migrate_with_alembic(sa_url)
        insert_daemons(db_url, DAEMONS)

        from app.registry import service
        from app.registry.schemas import HeartbeatIn, parse_body
        from app.store.engine import build_engine

        os.environ["CEILING_DATABASE_URL"] = db_url
        os.environ["CEILING_TTL_SECONDS"] = "86400"
        import ceiling_app

        stack.callback(lambda: ceiling_app._pool is not None and ceiling_app._pool.close())

        def real_app(storage: str, *, limiter: bool = True):
            return bench_app(sa_url, key, storage=storage, prefix=prefix, limiter=limiter)

        raw_bodies = [body(i, task_fields=args.task_fields) for i in range(DAEMONS)]
        beats = [parse_body(HeartbeatIn, b) for b in raw_bodies]
        ttl = timedelta(seconds=86400)
        layers: list[tuple[str, str, Callable[[int], object]]] = []

        raw_conn = psycopg.connect(db_url, autocommit=True)
        stack.callback(raw_conn.close)

        def raw_update(i: int) -> None:
            b = json.loads(raw_bodies[i % DAEMONS])
            raw_conn.execute(
                ceiling_app.HEARTBEAT,
                (
                    b["status"],
                    b["tasksProcessed"],
                    b["currentTask"],
                    b["lastHeartbeat"],
                    b["daemonId"],
                ),
            ).fetchone()

        layers.append(
            ("raw", "psycopg: json.loads + the ceiling's UPDATE ... RETURNING", raw_update)
        )

        engine = build_engine(sa_url, timeout=3)
        stack.callback(engine.dispose)

        def per_request(i: int) -> None:
            with engine.connect() as conn:
                service.heartbeat(conn, beats[i % DAEMONS], now=datetime.now(UTC), ttl=ttl)

        layers.append(
            ("sa_req", "SQLAlchemy: engine.connect() + service.heartbeat() + close()", per_request)
        )

        layers.append(
            (
                "pydantic",
                "pydantic: parse_body(HeartbeatIn, raw body)",
                lambda i: parse_body(HeartbeatIn, raw_bodies[i % DAEMONS]),
            )
        )
        layers.append(
            (
                "json",
                "stdlib: json.loads(raw body) (what the ceiling parses with)",
                lambda i: json.loads(raw_bodies[i % DAEMONS]),
            )
        )

        from limits import parse as parse_limit
        from limits.storage import storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        limit = parse_limit("100000000 per minute")
        limiter = FixedWindowRateLimiter(storage_from_string(REDIS_URL, socket_timeout=1))
        layers.append(
            (
                "limits",
                "limits: FixedWindowRateLimiter.hit() on Redis (one EVALSHA)",
                lambda i: limiter.hit(limit, prefix, "127.0.0.1"),
            )
        )

        def through(app) -> Callable[[int], object]:
            return heartbeat_requests(app, key, raw_bodies)

        layers.append(
            (
                "flask_ceiling",
                "Flask test client: ceiling_app (whole request)",
                through(ceiling_app.app),
            )
        )
        layers.append(
            (
                "flask_real_off",
                "Flask test client: real app, rate limit unhooked",
                through(real_app("memory://", limiter=False)),
            )
        )
        layers.append(
            (
                "flask_real_mem",
                "Flask test client: real app, limiter on memory://",
                through(real_app("memory://")),
            )
        )
        layers.append(
            (
                "flask_real_redis",
                "Flask test client: real app, limiter on Redis",
                through(real_app(REDIS_URL)),
            )
        )

        print(
            f"{args.repeats} x {args.calls} calls per layer, interleaved; median of the runs",
            flush=True,
        )
        print(f"  {'layer':<66} {'CPU us':>8} {'wall us':>8}")
        results = measure_all(layers, args.calls, args.repeats)
        cpu = {k: v[0] for k, v in results.items()}
        sqlalchemy = cpu["sa_req"] - cpu["raw"]
        pydantic = cpu["pydantic"] - cpu["json"]
        rest = cpu["flask_real_off"] - cpu["flask_ceiling"] - sqlalchemy - pydantic
        summary = [
            (
                "real app (limiter on Redis) - ceiling",
                cpu["flask_real_redis"] - cpu["flask_ceiling"],
            ),
            (
                "  SQLAlchemy + pool over raw psycopg (connect + service.heartbeat + close)",
                sqlalchemy,
            ),
            (
                "  rate limit, memory:// storage (vs unhooked)",
                cpu["flask_real_mem"] - cpu["flask_real_off"],
            ),
            (
                "  Redis instead of memory:// as its storage",
                cpu["flask_real_redis"] - cpu["flask_real_mem"],
            ),
            ("  pydantic over json.loads", pydantic),
            ("  the rest: auth, liveness, metrics, request id, Flask hooks ...", rest),
        ]
        print("\nCPU of this process per heartbeat, differences (us):")
        for label, value in summary:
            print(f"  {label:<76} {value:6.0f}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
