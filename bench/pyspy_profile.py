"""bench/run.py --profile: py-spy recordings of one worker per server, summarised by component."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.support.gunicorn_servers import Gunicorn
from tests.support.paths import ROOT, VENV_BIN
from wrk import BENCH, Load, WrkResult

PY_SPY_RATE = 100  # samples per second

# Where a worker's time goes. The first rule (in this order) that matches any
# frame of a sample names it; what matches none is the WSGI server and Flask.
IDLE = "idle: worker waiting for the next connection"
CATEGORIES = (
    (
        "rate limiter (Flask-Limiter, limits, redis, app/http/limiter.py, claims)",
        ("flask_limiter/", "app/http/limiter.py", "app/store/rate_leases.py", "limits/", "redis/"),
    ),
    ("metrics (prometheus_client)", ("prometheus_client/", "app/metrics/", "app/http/request_metrics.py")),
    ("outage grace probe (once a second)", ("app/registry/outage_grace.py",)),
    ("auth (key kinds, X-API-Key check)", ("app/http/auth.py",)),
    ("body parsing (pydantic, schemas)", ("pydantic", "app/registry/schemas.py")),
    (
        "database (SQLAlchemy, psycopg, pool, the statement, deadlines)",
        (
            "sqlalchemy/",
            "psycopg",
            "app/store/",
            "app/registry/service.py",
            "app/registry/health_postgres.py",
        ),
    ),
    ("JSON response (jsonify, json)", ("flask/json/", "json/")),
    (
        "endpoint's own code (routes, ceiling_app: rows -> dicts)",
        ("app/http/registry.py", "app/registry/wire.py", "ceiling_app.py"),
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
    server: Gunicorn,
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


def profile(load: Load, servers: list[Gunicorn], duration: float, tag: str) -> None:
    pyspy = VENV_BIN / "py-spy"
    seconds = int(duration)
    print(
        f"\n== profile: {load.label} (py-spy, 100 Hz, one worker of each server, {seconds} s per "
        f"recording, under the same wrk load) =="
    )
    for server in servers:
        workers = server.workers()
        worker = workers[0]
        recordings = (
            (BENCH / f"profile-{tag}-{server.name}.txt", True,
             f"{server.name}, wall clock (--idle: waits on Postgres/Redis included)"),
            (BENCH / f"profile-{tag}-{server.name}-cpu.txt", False,
             f"{server.name}, on-CPU only (ms/req here: CPU time)"),
        )
        for path, idle, title in recordings:
            r = py_spy_record(pyspy, worker, path, seconds, "raw", idle, load, server)
            print(f"[{server.name}: {r.rps:.1f} req/s while recorded]")
            print(summarise_profile(path, title, seconds=seconds,
                                    requests=r.rps * seconds / len(workers)))
        (wall, _, _), (cpu, _, _) = recordings
        print(f"   collapsed stacks: bench/{wall.name} (wall clock), bench/{cpu.name} (on-CPU)")
        if server.name == "real":
            svg = BENCH / f"profile-{tag}.svg"
            py_spy_record(pyspy, worker, svg, seconds, "flamegraph", True, load, server)
            print(f"   flame graph (wall clock): bench/{svg.name}")
