"""Throughput and latency of the real service against a thin Flask ceiling, under wrk.

    .venv/bin/python bench/run.py [--rounds 5] [--duration 10] [--connections 16]
                                  [--health-connections 4] [--only heartbeat|health]
                                  [--address-per-daemon] [--profile]

Why: a ceiling doing the same database work with nothing else shows what the
service's layers cost, and CPU per request stays comparable on a busy machine
where req/s does not. bench/README.md says what it runs and how to read it;
docs/decisions.md what it measured. Everything is on 127.0.0.1, every load run
is bounded by --duration, and everything it made is removed at the end.
Exit status: 0 when every response was 2xx, 1 otherwise, 2 when a tool (wrk,
py-spy, Postgres, Redis) is missing.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support (bench/ itself is on the path as the script's)

try:
    import psycopg
    import redis
    from sqlalchemy.engine import make_url
except ImportError:  # pragma: no cover - wrong interpreter
    sys.exit("bench/run.py needs the project's venv: run it as .venv/bin/python bench/run.py")

from compare import compare  # noqa: E402
from cpu import CpuMeter  # noqa: E402
from pyspy_profile import profile  # noqa: E402
from seed import count_daemons, insert_daemons, keep_daemons, libpq_url, vacuum  # noqa: E402
from servers import report_rss, sanity_check, start_servers  # noqa: E402
from wrk import Load  # noqa: E402

from tests.support.paths import VENV_BIN  # noqa: E402
from tests.support.postgres import (  # noqa: E402
    migrate_with_alembic,
    postgres_admin_url,
    scratch_database,
)
from tests.support.redis_store import REDIS_URL, delete_redis_keys, redis_server_pid  # noqa: E402
from tests.support.unavailable import Unavailable  # noqa: E402


def fail_missing(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds per server and test (default 5)"
    )
    parser.add_argument(
        "--duration", type=float, default=10, help="seconds per wrk round (default 10)"
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections for heartbeats (16)"
    )
    parser.add_argument(
        "--health-connections", type=int, default=4, help="wrk connections for /health (4)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3, help="seconds of warm-up per server and test (3)"
    )
    parser.add_argument(
        "--daemons", type=int, default=10_000, help="daemons for the heartbeat test (10000)"
    )
    parser.add_argument(
        "--health-sizes",
        default="1000,10000",
        help="active daemons for the /health tests, comma-separated (1000,10000)",
    )
    parser.add_argument("--only", choices=("heartbeat", "health"), help="run only this test")
    parser.add_argument(
        "--ratelimit-storage",
        default=REDIS_URL,
        help=f"the real service's RATELIMIT_STORAGE_URI (default {REDIS_URL}; "
        "memory:// shows what Redis costs)",
    )
    parser.add_argument(
        "--address-per-daemon",
        action="store_true",
        help="each daemon sends its own X-Forwarded-For (the real service trusts one proxy "
        "hop): one rate-limit bucket per daemon instead of one for all",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also record py-spy profiles of the real service and the ceiling",
    )
    args = parser.parse_args()
    if not 1 <= args.duration <= 60:
        parser.error("--duration must be between 1 and 60 seconds")
    args.health_sizes = sorted(
        {int(n) for n in args.health_sizes.split(",") if n.strip()}, reverse=True
    )
    if any(n > args.daemons or n < 1 for n in args.health_sizes):
        parser.error("--health-sizes must be between 1 and --daemons")
    if args.daemons > 100_000:
        parser.error("--daemons: at most 100000 (ids are daemon_00000..daemon_99999)")
    return args


def check_tools(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        fail_missing(
            "wrk is not installed. On Debian/Ubuntu: apt-get update && apt-get install -y wrk"
        )
    gunicorn = VENV_BIN / "gunicorn"
    if not gunicorn.exists():
        fail_missing(
            f"{gunicorn.relative_to(ROOT)} is missing: run `make test` (or make the venv) first"
        )
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        fail_missing("psycopg-pool is missing: .venv/bin/pip install -r bench/requirements.txt")
    if args.profile and not (VENV_BIN / "py-spy").exists():
        fail_missing("py-spy is missing: .venv/bin/pip install -r bench/requirements.txt")


def local_redis_pid() -> int | None:
    """The local Redis server's pid, to count its CPU; None when it runs elsewhere."""
    try:
        pid = redis_server_pid(REDIS_URL)
    except Unavailable as exc:
        fail_missing(str(exc))
    try:
        return pid if "redis" in Path(f"/proc/{pid}/comm").read_text() else None
    except OSError:
        return None  # Redis in another container or host: its CPU is not counted


def measure(args: argparse.Namespace, stack: ExitStack, redis_pid: int | None) -> bool:
    """Set everything up (undone by ``stack``), run the tests; True when every answer was 2xx."""
    try:
        db_url = stack.enter_context(scratch_database("bench"))
    except Unavailable as exc:
        fail_missing(f"{exc} (set TEST_POSTGRES_URL)")
    print(f"scratch database {make_url(db_url).database}; alembic upgrade head ...", flush=True)
    migrate_with_alembic(db_url)
    insert_daemons(db_url, args.daemons)
    print(f"inserted {args.daemons} daemons (expiring in 30 days)")

    token = secrets.token_hex(6)
    key = secrets.token_urlsafe(24)
    prefix = f"bench-{token}"
    stack.callback(delete_limiter_keys, prefix)
    scratch = Path(tempfile.mkdtemp(prefix="daemon-health-bench-"))
    stack.callback(shutil.rmtree, scratch, ignore_errors=True)
    servers = start_servers(scratch, db_url=db_url, key=key, key_prefix=prefix,
                            ratelimit_storage=args.ratelimit_storage,
                            address_per_daemon=args.address_per_daemon)
    for server in servers:
        stack.callback(server.stop)
    print(
        "servers: "
        + ", ".join(
            f"{s.name} {s.url} (master {s.process.pid}, workers "
            f"{' '.join(map(str, s.workers()))})"
            for s in servers
        )
    )
    print(
        f"both: gunicorn, 2 sync workers, timeout 30 s, access log to a file; real: limiter on "
        f"{args.ratelimit_storage} (never rejects), DAEMON_TTL_SECONDS=86400"
        + (", one client address per daemon" if args.address_per_daemon else "")
    )
    sanity_check(servers, key, args.daemons)
    # Counts the Postgres backends of the bench database, from a connection outside it.
    admin = stack.enter_context(
        psycopg.connect(libpq_url(postgres_admin_url()), autocommit=True, connect_timeout=5)
    )
    meter = CpuMeter(admin, make_url(db_url).database, redis_pid)

    all_ok = True
    if args.only in (None, "heartbeat"):
        load = Load(
            f"POST /api/daemon/heartbeat, {args.daemons:,} daemons",
            "/api/daemon/heartbeat",
            args.connections,
            script_args=[key, str(args.daemons)]
            + (["spread"] if args.address_per_daemon else []),
        )
        all_ok &= compare(load, servers, args.rounds, args.duration, args.warmup, meter)
        if args.profile:
            profile(load, servers, args.duration, "heartbeat")

    if args.only in (None, "health"):
        for size in args.health_sizes:
            if count_daemons(db_url) != size:
                keep_daemons(db_url, size)
            else:
                vacuum(db_url)
            load = Load(
                f"GET /api/daemon/health, {size:,} active daemons",
                "/api/daemon/health",
                args.health_connections,
                key=key,
            )
            all_ok &= compare(load, servers, args.rounds, args.duration, args.warmup, meter)
            if args.profile and size == max(args.health_sizes):
                profile(load, servers, args.duration, f"health-{size}")

    report_rss(servers)
    return all_ok


def delete_limiter_keys(prefix: str) -> None:
    """Remove the rate limiter's Redis keys the run made (best effort: Redis may be gone)."""
    try:
        delete_redis_keys(REDIS_URL, prefix)
    except redis.RedisError:
        pass


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens
    args = parse_args()
    check_tools(args)
    redis_pid = local_redis_pid()

    def on_sigterm(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with ExitStack() as stack:
            all_ok = measure(args, stack, redis_pid)
    except KeyboardInterrupt:
        print("interrupted: cleaned up")
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 1
    print("\nOK: every response was 2xx" if all_ok
          else "\nFAILED: some responses were not 2xx (see above)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
