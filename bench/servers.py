"""The two servers under load: the real service and bench/ceiling_app.py, alike but for the app.

Both are gunicorn with 2 sync workers and gunicorn.conf.py's timeouts and
access-log format (plus the worker's pid, which tells when every worker serves);
the ceiling cannot read that file itself (its hooks are the real service's), so
its values are passed on the command line.
"""

from __future__ import annotations

from pathlib import Path

from seed import libpq_url
from tests.support.gunicorn_servers import (
    ACCESS_LOG_FORMAT,
    Gunicorn,
    gunicorn_setting,
    spawn_gunicorn,
    wait_until_serving,
)
from tests.support.http_client import request
from tests.support.paths import ROOT
from tests.support.processes import free_port, service_env

BENCH = ROOT / "bench"
WORKERS = 2


def start_servers(scratch: Path, *, db_url: str, key: str, key_prefix: str,
                  ratelimit_storage: str, address_per_daemon: bool) -> list[Gunicorn]:
    """Start both servers, each ready on all its workers; stop what started if one fails."""
    ceiling_port = free_port()
    servers = [
        spawn_gunicorn(
            scratch / "real",
            service_env(
                ADMIN_API_KEY=key,
                DATABASE_URL=db_url,
                # Long enough that no daemon goes stale during a run.
                DAEMON_TTL_SECONDS="86400",
                RATELIMIT_STORAGE_URI=ratelimit_storage,
                RATELIMIT_KEY_PREFIX=key_prefix,
                # The limiter runs on every request but never rejects.
                ADMIN_RATE_LIMIT="100000000 per minute",
                TRUSTED_PROXY_HOPS="1" if address_per_daemon else "0",
                WEB_CONCURRENCY=str(WORKERS),
            ),
            port=free_port(),
            name="real",
        ),
        spawn_gunicorn(
            scratch / "ceiling",
            service_env(CEILING_DATABASE_URL=libpq_url(db_url), CEILING_TTL_SECONDS="86400"),
            port=ceiling_port,
            arguments=[
                "--workers", str(WORKERS),
                "--worker-class", str(gunicorn_setting("worker_class")),
                "--timeout", str(gunicorn_setting("timeout")),
                "--graceful-timeout", str(gunicorn_setting("graceful_timeout")),
                "--no-control-socket",
                "--access-logfile", "-",
                "--access-logformat", ACCESS_LOG_FORMAT,
                "--bind", f"127.0.0.1:{ceiling_port}",
                "ceiling_app:app",
            ],
            cwd=BENCH,  # not ROOT: gunicorn would pick up ./gunicorn.conf.py by itself
            name="ceiling",
        ),
    ]
    try:
        for server in servers:
            wait_until_serving(server, workers=WORKERS)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def sanity_check(servers: list[Gunicorn], key: str, daemons: int) -> None:
    """Both answer a heartbeat 200, an unknown daemon's 404, and /health with every daemon."""
    beat = {"daemonId": "daemon_00000", "status": "healthy", "tasksProcessed": 1,
            "currentTask": None, "lastHeartbeat": "2026-01-25T12:00:00Z"}
    unknown = {**beat, "daemonId": "no_such_daemon"}
    for server in servers:
        reply = request(server.port, "POST", "/api/daemon/heartbeat", body=beat, api_key=key)
        if reply.status != 200:
            raise RuntimeError(f"{server.name}: heartbeat answered {reply.status} "
                               f"{reply.body[:300]!r}\n{server.output()}")
        reply = request(server.port, "POST", "/api/daemon/heartbeat", body=unknown, api_key=key)
        if reply.status != 404:
            raise RuntimeError(f"{server.name}: unknown daemon's heartbeat answered "
                               f"{reply.status} {reply.body[:300]!r}")
        reply = request(server.port, "GET", "/api/daemon/health", api_key=key, timeout=30)
        if reply.status != 200 or f'"totalActive":{daemons}' not in reply.body.decode().replace(" ", ""):
            raise RuntimeError(f"{server.name}: /health answered {reply.status} {reply.body[-200:]!r}")


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def report_rss(servers: list[Gunicorn]) -> None:
    print("\n== gunicorn RSS after the load (VmRSS from /proc/<pid>/status) ==")
    for server in servers:
        master = vm_rss_kib(server.process.pid)
        workers = [(pid, vm_rss_kib(pid)) for pid in server.workers()]
        parts = ", ".join(
            f"worker {pid}: {rss / 1024:.1f} MiB" for pid, rss in workers if rss is not None
        )
        total = sum(rss for _, rss in workers if rss is not None)
        print(
            f"{server.name:<8} master: {(master or 0) / 1024:.1f} MiB; {parts}; workers total {total / 1024:.1f} MiB"
        )
