"""Throughput and latency of the real service against a thin Flask ceiling, under wrk.

    .venv/bin/python bench/run.py [--rounds 5] [--duration 10] [--connections 16]
                                  [--health-connections 4] [--only heartbeat|health]
                                  [--address-per-daemon] [--profile]

What it does, all on 127.0.0.1 and every load run bounded by --duration:

1. creates a scratch Postgres database (bench_<random>) on the server named by
   TEST_POSTGRES_URL (default: the local test server), brings it up with
   ``alembic upgrade head`` and inserts --daemons (10,000) daemons with plain SQL,
   expiring 30 days ahead so nothing goes stale during the run;
2. starts two gunicorn servers with the same settings (2 sync workers, the
   timeouts and access log of gunicorn.conf.py): the real service
   (``-c gunicorn.conf.py wsgi:app``, Redis rate limiter set so high it never
   rejects, DAEMON_TTL_SECONDS=86400) and bench/ceiling_app.py;
3. warms both up, then alternates rounds of wrk (the order flips every round):
   POST /api/daemon/heartbeat with bench/heartbeat.lua, and GET /api/daemon/health
   with 1,000 and with 10,000 active daemons;
4. prints per-round req/s, latency and CPU per request (gunicorn workers,
   Postgres backends, Redis), the medians, the ratios real/ceiling, non-2xx
   counts (must be zero) and the RSS of every gunicorn worker;
5. with --profile, records the real service's worker (and the ceiling's) with
   py-spy while wrk runs, and prints where the time goes
   (bench/profile-*.txt: collapsed stacks; bench/profile-heartbeat.svg: flame graph).

Everything it made is removed at the end (servers stopped by pid, database
dropped, the limiter's Redis keys deleted). Exit status: 0 when every response
was 2xx, 1 otherwise, 2 when a tool (wrk, py-spy, Postgres, Redis) is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
START_DEADLINE_SECONDS = 20.0
STOP_DEADLINE_SECONDS = 25.0  # above gunicorn.conf.py's graceful_timeout (20 s)
WRK_THREADS = 2
PY_SPY_RATE = 100  # samples per second

try:
    import psycopg
except ImportError:  # pragma: no cover - wrong interpreter
    sys.exit("bench/run.py needs the project's venv: run it as .venv/bin/python bench/run.py")

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def say(*parts: object) -> None:
    print(*parts, flush=True)


def fail_missing(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


# ------------------------------------------------------------------------ database


def libpq_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql://", url)


def with_database(url: str, name: str) -> str:
    base, _, _ = libpq_url(url).partition("?")
    scheme, _, rest = base.partition("://")
    netloc = rest.split("/", 1)[0]
    query = url.partition("?")[2]
    return f"{scheme}://{netloc}/{name}" + (f"?{query}" if query else "")


def admin_connect(url: str):
    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5)


def insert_daemons(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO daemons (daemon_id, version, capabilities, poll_interval, registered_at,
                                 session_started_at, last_heartbeat, expires_at,
                                 reported_heartbeat_at, status, tasks_processed, current_task)
            SELECT 'daemon_' || lpad(i::text, 5, '0'), '2.2', '["queue", "email"]'::jsonb, 5000,
                   now(), now(), now(), now() + interval '30 days', now(), 'healthy', 0, NULL
            FROM generate_series(0, %s - 1) AS i
            """,
            (count,),
        )
        conn.execute("VACUUM ANALYZE daemons")


def keep_daemons(url: str, count: int) -> None:
    """Delete all but the first ``count`` daemons (gone, not expired: nobody reports them)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM daemons WHERE daemon_id >= %s", (f"daemon_{count:05d}",))
        conn.execute("VACUUM ANALYZE daemons")


def count_daemons(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM daemons").fetchone()[0]


def delete_limiter_keys(prefix: str) -> None:
    """Remove the rate limiter's Redis keys a run made under ``prefix`` (best effort)."""
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2) as client:
            keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
    except redis.RedisError:
        pass


def vacuum(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE daemons")


# ------------------------------------------------------------------------ servers


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    logdir: Path
    files: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        return child_pids(self.process.pid)

    def log_tail(self) -> str:
        parts = []
        for name in ("stdout.log", "stderr.log"):
            path = self.logdir / name
            if path.exists():
                parts.append(
                    f"--- {self.name} {name} ---\n{path.read_text(errors='replace')[-3000:]}"
                )
        return "\n".join(parts)

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_DEADLINE_SECONDS)
                except subprocess.TimeoutExpired:
                    # start_new_session: the group holds only this master and its workers.
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        finally:
            for handle in self.files:
                handle.close()
            self.files.clear()


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return sorted(int(p) for p in text.split())
    except OSError:
        pass
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(
    name: str, argv: list[str], *, cwd: Path, env: dict[str, str], port: int, scratch: Path
) -> Server:
    logdir = scratch / name
    (logdir / "tmp").mkdir(parents=True)
    (logdir / "run").mkdir()
    out = open(logdir / "stdout.log", "wb")  # noqa: SIM115
    err = open(logdir / "stderr.log", "wb")  # noqa: SIM115
    base = {k: v for k, v in os.environ.items() if k in INHERITED_VARIABLES}
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**base, **env, "TMPDIR": str(logdir / "tmp"), "XDG_RUNTIME_DIR": str(logdir / "run")},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )
    return Server(name, process, port, logdir, [out, err])


def wait_until_serving(server: Server, workers: int) -> None:
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} gunicorn exited with {server.process.returncode}\n{server.log_tail()}"
            )
        if len(server.workers()) >= workers:
            try:
                status, _ = http(server, "GET", "/__bench_probe__", timeout=2)
                if status == 404:
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} did not serve within {START_DEADLINE_SECONDS}s\n{server.log_tail()}"
    )


def http(
    server: Server,
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> tuple[int, bytes]:
    headers = {}
    if key:
        headers["X-API-Key"] = key
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"{server.url}{path}", data=body, headers=headers, method=method
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


# ------------------------------------------------------------------------ wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    raw: str


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not match:
        raise ValueError(f"cannot read wrk time {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    percentiles = {
        p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if not (rps and total and len(percentiles) == 4):
        raise RuntimeError(f"could not parse wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p75_ms=percentiles["75"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        raw=output,
    )


@dataclass
class Load:
    """One wrk command line against a server: heartbeats or /health."""

    label: str
    path: str
    connections: int
    script_args: list[str] | None = None  # heartbeat.lua and its arguments
    key: str = ""

    def argv(self, server: Server, duration: float) -> list[str]:
        threads = min(WRK_THREADS, self.connections)
        argv = [
            "wrk",
            f"-t{threads}",
            f"-c{self.connections}",
            f"-d{duration:g}s",
            "--latency",
            "--timeout",
            "10s",
        ]
        if self.script_args is not None:
            argv += [
                "-s",
                str(BENCH / "heartbeat.lua"),
                f"{server.url}{self.path}",
                "--",
                *self.script_args,
            ]
        else:
            argv += ["-H", f"X-API-Key: {self.key}", f"{server.url}{self.path}"]
        return argv

    def run(self, server: Server, duration: float) -> WrkResult:
        done = subprocess.run(
            self.argv(server, duration),
            check=False,
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return parse_wrk(done.stdout)


def fmt_ms(value: float) -> str:
    return f"{value:.2f}ms" if value < 100 else f"{value:.0f}ms"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent by a server's workers, by the Postgres backends serving the
    bench database, and by Redis (shared: anyone else's use of it counts too).

    Per request, this moves much less with the load of a shared, noisy machine
    than req/s does: a request costs about the same CPU however long it waits.
    """

    def __init__(self, admin, db_name: str, redis_pid: int | None) -> None:
        self.admin = admin
        self.db_name = db_name
        self.redis_pid = redis_pid

    def _backends(self) -> list[int]:
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (self.db_name,),
        ).fetchall()
        return [row[0] for row in rows]

    def snapshot(self, server: Server) -> dict[str, dict[int, float]]:
        groups = {
            "worker": server.workers(),
            "postgres": self._backends(),
            "redis": [self.redis_pid] if self.redis_pid else [],
        }
        return {
            name: {pid: t for pid in pids if (t := cpu_seconds(pid)) is not None}
            for name, pids in groups.items()
        }

    @staticmethod
    def per_request_ms(before, after, requests: int) -> dict[str, float]:
        """ms of CPU per request in each group; processes that came or went are left out."""
        out = {}
        for name in after:
            spent = sum(
                after[name][pid] - before[name][pid] for pid in after[name] if pid in before[name]
            )
            out[name] = 1000 * spent / requests if requests else 0.0
        return out


@dataclass
class Round:
    wrk: WrkResult
    cpu: dict[str, float]  # ms of CPU per request: worker, postgres, redis


def compare(
    load: Load, servers: list[Server], rounds: int, duration: float, warmup: float, meter: CpuMeter
) -> bool:
    """Alternate rounds of ``load`` on each server; print the table; True if all 2xx."""
    say(f"\n== {load.label} ==")
    say(
        f"   wrk -t{min(WRK_THREADS, load.connections)} -c{load.connections} -d{duration:g}s --latency, "
        f"{rounds} rounds each, alternating (order flips every round)"
    )
    say("   cpu/req: ms of CPU per request in the gunicorn workers / the Postgres backends / Redis")
    for server in servers:
        load.run(server, warmup)  # warm-up: not counted
    results: dict[str, list[Round]] = {s.name: [] for s in servers}
    say(
        f"{'round':>6}  {'server':<8} {'req/s':>8} {'p50':>8} {'p90':>8} {'p99':>8}  "
        f"{'cpu/req: worker':>15} {'pg':>6} {'redis':>6}  {'non-2xx':>7} {'sock-err':>8}"
    )

    def row(
        label: str,
        name: str,
        rps: float,
        p50: float,
        p90: float,
        p99: float,
        cpu: dict[str, float],
        non_2xx: int,
        sock: int,
    ) -> None:
        say(
            f"{label:>6}  {name:<8} {rps:>8.1f} {fmt_ms(p50):>8} {fmt_ms(p90):>8} {fmt_ms(p99):>8}  "
            f"{cpu['worker']:>15.3f} {cpu['postgres']:>6.3f} {cpu['redis']:>6.3f}  {non_2xx:>7} {sock:>8}"
        )

    for round_no in range(1, rounds + 1):
        order = servers if round_no % 2 else list(reversed(servers))
        for server in order:
            before = meter.snapshot(server)
            r = load.run(server, duration)
            cpu = CpuMeter.per_request_ms(before, meter.snapshot(server), r.requests)
            results[server.name].append(Round(r, cpu))
            row(
                str(round_no),
                server.name,
                r.rps,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                cpu,
                r.non_2xx,
                r.socket_errors,
            )
    medians = {}
    for server in servers:
        rs = results[server.name]
        medians[server.name] = m = {
            "rps": statistics.median(x.wrk.rps for x in rs),
            "p50": statistics.median(x.wrk.p50_ms for x in rs),
            "p90": statistics.median(x.wrk.p90_ms for x in rs),
            "p99": statistics.median(x.wrk.p99_ms for x in rs),
            "cpu": {
                k: statistics.median(x.cpu[k] for x in rs) for k in ("worker", "postgres", "redis")
            },
            "non_2xx": sum(x.wrk.non_2xx for x in rs),
            "sock": sum(x.wrk.socket_errors for x in rs),
        }
        row(
            "median",
            server.name,
            m["rps"],
            m["p50"],
            m["p90"],
            m["p99"],
            m["cpu"],
            m["non_2xx"],
            m["sock"],
        )
    real, ceiling = medians["real"], medians["ceiling"]
    real_cpu, ceiling_cpu = sum(real["cpu"].values()), sum(ceiling["cpu"].values())
    say(
        f"ratio real/ceiling of medians: req/s {real['rps'] / ceiling['rps']:.2f}x   "
        f"p50 {real['p50'] / ceiling['p50']:.2f}x   p90 {real['p90'] / ceiling['p90']:.2f}x   "
        f"p99 {real['p99'] / ceiling['p99']:.2f}x   "
        f"CPU/req (worker+pg+redis) {real_cpu:.3f} / {ceiling_cpu:.3f} ms = {real_cpu / ceiling_cpu:.2f}x"
    )
    ok = all(m["non_2xx"] == 0 and m["sock"] == 0 for m in medians.values())
    if not ok:
        say(
            "!! some responses were not 2xx or failed at the socket: the numbers above are not valid"
        )
    return ok


# ------------------------------------------------------------------------ profile

# Where a worker's time goes. The first rule (in this order) that matches any
# frame of a sample names it; what matches none is the WSGI server and Flask.
IDLE = "idle: worker waiting for the next connection"
CATEGORIES = (
    ("rate limiter (app/limiter.py, limits, redis)", ("app/limiter.py", "limits/", "redis/")),
    ("metrics (prometheus_client)", ("prometheus_client/", "app/metrics/")),
    ("liveness probe (once a second)", ("app/liveness.py",)),
    ("auth (X-API-Key check)", ("app/auth.py",)),
    ("body parsing (pydantic, schemas)", ("pydantic", "app/daemons/schemas.py")),
    (
        "database (SQLAlchemy, psycopg, pool, the statement)",
        (
            "sqlalchemy/",
            "psycopg",
            "app/db.py",
            "app/dialect.py",
            "app/daemons/service.py",
            "app/daemons/pg_health.py",
        ),
    ),
    ("JSON response (jsonify, json)", ("flask/json/", "json/")),
    (
        "endpoint's own code (routes, ceiling_app: rows -> dicts)",
        ("app/daemons/routes.py", "app/daemons/state.py", "ceiling_app.py"),
    ),
    ("access log (gunicorn glogging, logging)", ("gunicorn/glogging.py", "logging/")),
    (
        "request/response plumbing (gunicorn http, werkzeug, flask)",
        ("gunicorn/", "werkzeug/", "flask/"),
    ),
)

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]+?)(?::(?P<line>\d+))?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw)
        if match:
            frames.append((match.group("func"), match.group("file")))
        elif raw and not raw.startswith(("process ", "thread ")):
            frames.append((raw, ""))
    return frames


def _category(frames: list[tuple[str, str]]) -> str:
    # gunicorn's sync worker waits for a connection in SyncWorker.wait (select).
    if any(func == "SyncWorker.wait" for func, _ in frames):
        return IDLE
    for name, patterns in CATEGORIES:
        for _func, file in frames:
            if any(p in file for p in patterns):
                return name
    return "other"


def summarise_profile(
    raw_path: Path, title: str, *, seconds: float, requests: float, top: int = 15
) -> str:
    """Shares of the worker's main thread, and roughly how many ms of each request they are.

    ``requests`` is about how many requests this worker answered while recorded
    (wrk's rate x seconds / workers), so samples x sample period / requests is
    the (wall or CPU) time a component takes per request.
    """
    stacks: list[tuple[list[tuple[str, str]], int]] = []
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not (stack and count.isdigit()):
            continue
        frames = _frames(stack)
        # Background threads (psycopg_pool's workers) are not request work.
        if frames and frames[0][0] == "Thread._bootstrap":
            continue
        stacks.append((frames, int(count)))
    total = sum(c for _, c in stacks)
    lines = [f"-- {title}: {total} samples of the worker's main thread --"]
    if not total:
        return "\n".join(lines + ["(no samples)"])
    # One sample is 1/PY_SPY_RATE s of this thread's (wall or CPU) time.
    ms_per_sample = 1000 / PY_SPY_RATE
    categories: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        categories[_category(frames)] += count
        for name in {f"{func} ({file})" for func, file in frames}:
            inclusive[name] += count
        if frames:
            func, file = frames[-1]
            own[f"{func} ({file})"] += count
    lines.append(
        f"by component   (ms/req: samples x {ms_per_sample:g} ms / ~{requests:.0f} requests this "
        f"worker answered in {seconds:g} s)"
    )
    for name, count in categories.most_common():
        ms = count * ms_per_sample / requests if requests else 0.0
        lines.append(f"  {100 * count / total:5.1f}%  {ms:6.3f} ms/req  {name}")
    boring = ("gunicorn", "gunicorn/app/", "gunicorn/arbiter.py", "gunicorn/workers/base.py")
    lines.append(
        f"top {top} functions, inclusive (the function and what it calls; gunicorn's outer frames left out):"
    )
    shown = 0
    for name, count in inclusive.most_common():
        if any(f"({b}" in name for b in boring) or name.startswith("SyncWorker.run"):
            continue
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
        shown += 1
        if shown == top:
            break
    lines.append(f"top {top} functions, self (leaf frame):")
    for name, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def sanitise(path: Path) -> None:
    """No absolute paths of this machine in files that may be committed."""
    text = path.read_text(errors="replace")
    for prefix in (str(ROOT) + "/", str(ROOT)):
        text = text.replace(prefix, "")
    path.write_text(text)


def py_spy_record(
    pyspy: Path,
    pid: int,
    out: Path,
    duration: float,
    fmt: str,
    idle: bool,
    load: Load,
    server: Server,
) -> WrkResult:
    argv = [
        str(pyspy),
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{int(duration)}",
        "--rate",
        str(PY_SPY_RATE),
        "--nonblocking",
        "--format",
        fmt,
        "--output",
        str(out),
    ]
    if idle:
        argv.append("--idle")
    spy = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        time.sleep(0.5)  # let it attach before the load starts
        result = load.run(server, duration + 1)
        output, _ = spy.communicate(timeout=duration + 30)
    finally:
        if spy.poll() is None:
            spy.terminate()
            spy.wait(timeout=10)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}):\n{output}")
    sanitise(out)
    return result


def profile(load: Load, servers: list[Server], duration: float, tag: str) -> None:
    pyspy = VENV_BIN / "py-spy"
    seconds = int(duration)
    say(
        f"\n== profile: {load.label} (py-spy, 100 Hz, one worker of each server, {seconds} s per "
        f"recording, under the same wrk load) =="
    )
    for server in servers:
        workers = server.workers()
        worker = workers[0]
        wall = BENCH / f"profile-{tag}-{server.name}.txt"
        r = py_spy_record(pyspy, worker, wall, seconds, "raw", True, load, server)
        say(f"[{server.name}: {r.rps:.1f} req/s while recorded]")
        say(
            summarise_profile(
                wall,
                f"{server.name}, wall clock (--idle: waits on Postgres/Redis included)",
                seconds=seconds,
                requests=r.rps * seconds / len(workers),
            )
        )
        cpu = BENCH / f"profile-{tag}-{server.name}-cpu.txt"
        r = py_spy_record(pyspy, worker, cpu, seconds, "raw", False, load, server)
        say(f"[{server.name}: {r.rps:.1f} req/s while recorded]")
        say(
            summarise_profile(
                cpu,
                f"{server.name}, on-CPU only (ms/req here: CPU time)",
                seconds=seconds,
                requests=r.rps * seconds / len(workers),
            )
        )
        say(f"   collapsed stacks: bench/{wall.name} (wall clock), bench/{cpu.name} (on-CPU)")
        if server.name == "real":
            svg = BENCH / f"profile-{tag}.svg"
            py_spy_record(pyspy, worker, svg, seconds, "flamegraph", True, load, server)
            say(f"   flame graph (wall clock): bench/{svg.name}")


# ------------------------------------------------------------------------ main


def report_rss(servers: list[Server]) -> None:
    say("\n== gunicorn RSS after the load (VmRSS from /proc/<pid>/status) ==")
    for server in servers:
        master = vm_rss_kib(server.process.pid)
        workers = [(pid, vm_rss_kib(pid)) for pid in server.workers()]
        parts = ", ".join(
            f"worker {pid}: {rss / 1024:.1f} MiB" for pid, rss in workers if rss is not None
        )
        total = sum(rss for _, rss in workers if rss is not None)
        say(
            f"{server.name:<8} master: {(master or 0) / 1024:.1f} MiB; {parts}; workers total {total / 1024:.1f} MiB"
        )


def sanity_check(servers: list[Server], key: str, daemons: int) -> None:
    beat = (
        b'{"daemonId":"daemon_00000","status":"healthy","tasksProcessed":1,'
        b'"currentTask":null,"lastHeartbeat":"2026-01-25T12:00:00Z"}'
    )
    unknown = beat.replace(b"daemon_00000", b"no_such_daemon")
    for server in servers:
        status, body = http(server, "POST", "/api/daemon/heartbeat", key=key, body=beat)
        if status != 200:
            raise RuntimeError(
                f"{server.name}: heartbeat answered {status} {body[:300]!r}\n{server.log_tail()}"
            )
        status, body = http(server, "POST", "/api/daemon/heartbeat", key=key, body=unknown)
        if status != 404:
            raise RuntimeError(
                f"{server.name}: unknown daemon's heartbeat answered {status} {body[:300]!r}"
            )
        status, body = http(server, "GET", "/api/daemon/health", key=key, timeout=30)
        if status != 200 or f'"totalActive":{daemons}' not in body.decode().replace(" ", ""):
            raise RuntimeError(f"{server.name}: /health answered {status} {body[-200:]!r}")


def main() -> int:
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
    health_sizes = sorted({int(n) for n in args.health_sizes.split(",") if n.strip()}, reverse=True)
    if any(n > args.daemons or n < 1 for n in health_sizes):
        parser.error("--health-sizes must be between 1 and --daemons")
    if args.daemons > 100_000:
        parser.error("--daemons: at most 100000 (ids are daemon_00000..daemon_99999)")

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

    # Both servers with gunicorn.conf.py's settings; the ceiling cannot read the file
    # itself (its hooks are the real service's), so its values are passed on the command line.
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        admin = admin_connect(admin_url)
    except psycopg.OperationalError as exc:
        fail_missing(f"Postgres is not reachable at {admin_url} (set TEST_POSTGRES_URL): {exc}")
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2) as client:
            redis_pid = int(client.info("server")["process_id"])
    except redis.RedisError as exc:
        fail_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    try:
        if "redis" not in Path(f"/proc/{redis_pid}/comm").read_text():
            redis_pid = None
    except OSError:
        redis_pid = None  # Redis in another container or host: its CPU is not counted

    def on_sigterm(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)

    token = secrets.token_hex(6)
    db_name = f"bench_{token}"
    db_url = with_database(admin_url, db_name)
    key = secrets.token_urlsafe(24)
    prefix = f"bench-{token}"
    scratch = Path(tempfile.mkdtemp(prefix="daemon-health-bench-"))
    servers: list[Server] = []
    all_ok = True
    try:
        admin.execute(f'CREATE DATABASE "{db_name}"')
        say(f"scratch database {db_name}; alembic upgrade head ...")
        base_env = {k: v for k, v in os.environ.items() if k in INHERITED_VARIABLES}
        migrate = subprocess.run(
            [str(VENV_BIN / "alembic"), "upgrade", "head"],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={
                **base_env,
                "DATABASE_URL": db_url.replace("postgresql://", "postgresql+psycopg://", 1),
            },
            timeout=120,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"alembic upgrade head failed:\n{migrate.stderr}")
        insert_daemons(db_url, args.daemons)
        say(f"inserted {args.daemons} daemons (expiring in 30 days)")

        real_port, ceiling_port = free_port(), free_port()
        servers.append(
            spawn(
                "real",
                [
                    str(gunicorn),
                    "-c",
                    "gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{real_port}",
                    "wsgi:app",
                ],
                cwd=ROOT,
                port=real_port,
                scratch=scratch,
                env={
                    "ADMIN_API_KEY": key,
                    "DATABASE_URL": db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                    "DAEMON_TTL_SECONDS": "86400",
                    "RATELIMIT_STORAGE_URI": args.ratelimit_storage,
                    "RATELIMIT_KEY_PREFIX": prefix,
                    "ADMIN_RATE_LIMIT": "100000000 per minute",
                    "TRUSTED_PROXY_HOPS": "1" if args.address_per_daemon else "0",
                    "WEB_CONCURRENCY": "2",
                },
            )
        )
        servers.append(
            spawn(
                "ceiling",
                [
                    str(gunicorn),
                    "--workers",
                    "2",
                    "--worker-class",
                    str(conf["worker_class"]),
                    "--timeout",
                    str(conf["timeout"]),
                    "--graceful-timeout",
                    str(conf["graceful_timeout"]),
                    "--no-control-socket",
                    "--access-logfile",
                    "-",
                    "--access-logformat",
                    conf["access_log_format"],
                    "--bind",
                    f"127.0.0.1:{ceiling_port}",
                    "ceiling_app:app",
                ],
                cwd=BENCH,  # not ROOT: gunicorn would pick up ./gunicorn.conf.py by itself
                port=ceiling_port,
                scratch=scratch,
                env={"CEILING_DATABASE_URL": db_url, "CEILING_TTL_SECONDS": "86400"},
            )
        )
        for server in servers:
            wait_until_serving(server, workers=2)
        say(
            "servers: "
            + ", ".join(
                f"{s.name} {s.url} (master {s.process.pid}, workers "
                f"{' '.join(map(str, s.workers()))})"
                for s in servers
            )
        )
        say(
            f"both: gunicorn, 2 sync workers, timeout 30 s, access log to a file; real: limiter on "
            f"{args.ratelimit_storage} (never rejects), DAEMON_TTL_SECONDS=86400"
            + (", one client address per daemon" if args.address_per_daemon else "")
        )
        sanity_check(servers, key, args.daemons)
        meter = CpuMeter(admin, db_name, redis_pid)

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
            for size in health_sizes:
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
                if args.profile and size == max(health_sizes):
                    profile(load, servers, args.duration, f"health-{size}")

        report_rss(servers)
        say(
            "\nOK: every response was 2xx"
            if all_ok
            else "\nFAILED: some responses were not 2xx (see above)"
        )
        return 0 if all_ok else 1
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    except RuntimeError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        for server in servers:
            server.stop()
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        finally:
            admin.close()
        delete_limiter_keys(prefix)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
