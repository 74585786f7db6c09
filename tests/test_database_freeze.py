"""A database that stops answering without closing its connections.

A private Postgres cluster is frozen with SIGSTOP (the postmaster and every
one of its processes) and thawed with SIGCONT: its kernel keeps acknowledging
packets, so nothing on the wire says it is gone, and its statement_timeout
cannot run. Real gunicorn with several sync workers and more concurrent
clients than workers must answer 503 JSON within about
DATABASE_TIMEOUT_SECONDS, then fast while the database stays silent, lose no
worker, and serve again within a second or two of the thaw — for a short
freeze and for one longer than gunicorn's 30 s worker timeout. The watcher
must not hang either.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from tests.support.api import heartbeat_body, registration
from tests.support.deployment import LoadThreads, Outcome, PrivateCluster, private_postgres_cluster
from tests.support.http_client import request
from tests.support.paths import ROOT, VENV_BIN
from tests.support.postgres import migrate_with_alembic
from tests.support.processes import service_env

ADMIN_KEY = "freeze-admin-key-0123456789"
TIMEOUT = 2  # DATABASE_TIMEOUT_SECONDS
WORKERS = 2
CLIENTS = 8
# Longest answer while the database goes silent: the timeout, the watchdog's
# grace and resolution (app/store/deadlines.py), and room for a busy machine.
SLOWEST_ALLOWED = TIMEOUT + 1.5
FAST = 1.0  # an answer while the breaker is open: well under the timeout, even on a busy machine
RECOVERY_ALLOWED = 2.0
HEARTBEAT, HEALTH, REGISTER = "/api/daemon/heartbeat", "/api/daemon/health", "/api/daemon/register"


# ------------------------------------------------------------------ freezing


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if ppid == parent:
                found.append(int(entry))
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


@contextmanager
def frozen(cluster: PrivateCluster) -> Iterator[None]:
    """SIGSTOP the cluster's postmaster and all its processes; SIGCONT them on exit."""
    postmaster = cluster.postmaster_pid()
    assert postmaster is not None
    # The postmaster first: stopped, it forks no new backend behind our back.
    _signal_all([postmaster], signal.SIGSTOP)
    children = _children(postmaster)
    _signal_all(children, signal.SIGSTOP)
    try:
        yield
    finally:
        _signal_all([*children, postmaster], signal.SIGCONT)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """A private cluster with a migrated ``daemon_health`` database."""
    with private_postgres_cluster() as private:
        admin = create_engine(private.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE daemon_health"))
        admin.dispose()
        migrate_with_alembic(private.url("daemon_health"))
        yield private


# ------------------------------------------------------------------- the API


def _send(port: int, kind: str, record, run: str, index: int, n: int) -> None:
    daemon_id = f"frz-{run}-{index}"
    path, body, method = {
        "register": (REGISTER, registration(daemonId=f"{daemon_id}-{n}"), "POST"),
        "heartbeat": (HEARTBEAT, heartbeat_body(daemonId=daemon_id, tasksProcessed=n), "POST"),
        "health": (HEALTH, None, "GET"),
    }[kind]
    started = time.monotonic()
    try:
        # Longer than gunicorn's worker timeout: a stuck worker shows as one killed.
        reply = request(port, method, path, body=body, api_key=ADMIN_KEY, timeout=45)
        record(Outcome(kind, started, time.monotonic(), reply.status, reply=reply))
    except OSError as exc:  # reset, closed without an answer, timed out
        record(Outcome(kind, started, time.monotonic(), error=type(exc).__name__))


# The long freeze outlasts gunicorn's 30 s worker timeout; room for set-up on a busy machine.
@pytest.mark.timeout(240)
@pytest.mark.parametrize("freeze_seconds", [5, 40], ids=["short-freeze", "long-freeze"])
def test_frozen_database_gets_fast_503s_no_worker_lost_and_quick_recovery(
    cluster, start_gunicorn, freeze_seconds
):
    url = cluster.url("daemon_health")
    server = start_gunicorn(
        workers=WORKERS, ADMIN_API_KEY=ADMIN_KEY, DATABASE_URL=url,
        DATABASE_TIMEOUT_SECONDS=str(TIMEOUT), ADMIN_RATE_LIMIT="1000000 per minute",
        RATELIMIT_STORAGE_URI="memory://",
    )
    run = uuid.uuid4().hex[:8]
    for index in range(CLIENTS):
        reply = request(server.port, "POST", REGISTER, api_key=ADMIN_KEY,
                        body=registration(daemonId=f"frz-{run}-{index}"))
        assert reply.status == 201, reply.body
    kinds = ("heartbeat", "health", "register")

    def work(index: int, stop: threading.Event, record) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            _send(server.port, kinds[index % len(kinds)], record, run, index, n)
            time.sleep(0.05)

    with LoadThreads(CLIENTS, work) as load:
        threading.Event().wait(1.5)
        assert {o.status for o in load.snapshot()} == {200, 201}, Counter(
            (o.status, o.error) for o in load.snapshot())
        with frozen(cluster):
            froze = time.monotonic()
            threading.Event().wait(freeze_seconds)
            thawed = time.monotonic()
        deadline = thawed + 10
        recovered = None
        while recovered is None and time.monotonic() < deadline:
            recovered = min((o.ended for o in load.snapshot()
                             if o.started >= thawed and o.status in (200, 201)), default=None)
            time.sleep(0.05)
        assert recovered is not None, f"no success within 10 s of the thaw\n{server.output()}"
        threading.Event().wait(2.0)
    server.stop()
    outcomes = load.snapshot()

    # Every client got an HTTP answer: success, or the contract's 503.
    assert not [o for o in outcomes if o.error], Counter(o.error for o in outcomes)
    assert set(Counter(o.status for o in outcomes)) <= {200, 201, 503}, Counter(
        o.status for o in outcomes)
    for o in outcomes:
        if o.status == 503:
            assert o.reply.json() == {"error": "Database unavailable; retry shortly"}
            assert o.reply.headers.get("Retry-After", "").isdigit(), o.reply.headers
    slowest = max(o.ended - o.started for o in outcomes)
    assert slowest < SLOWEST_ALLOWED, (f"slowest answer {slowest:.2f}s; (seconds, kind, "
                                       f"sent after the freeze, status): " + str(sorted(
        ((round(o.ended - o.started, 2), o.kind, round(o.started - froze, 2), o.status)
         for o in outcomes), reverse=True)[:8]) + "\n" + server.stderr()[-3000:])

    # The first 503 comes within about the timeout of the freeze...
    first_503 = min(o.ended for o in outcomes if o.status == 503 and o.ended >= froze)
    assert first_503 - froze < SLOWEST_ALLOWED
    # ...and once every worker has seen the silence, 503s come at once.
    while_open = [o for o in outcomes if o.started >= froze + SLOWEST_ALLOWED
                  and o.ended <= thawed]
    assert len(while_open) >= 20, len(while_open)
    assert {o.status for o in while_open} == {503}
    open_latencies = [o.ended - o.started for o in while_open]
    assert max(open_latencies) < FAST, sorted(open_latencies)[-5:]

    # Served again within a second or two of the thaw, and from then on only successes.
    assert recovered - thawed < RECOVERY_ALLOWED, f"recovered {recovered - thawed:.2f}s after"
    settled = [o for o in outcomes if o.started >= recovered + 1.0]
    assert settled and {o.status for o in settled} <= {200, 201}, Counter(
        o.status for o in settled)

    # No worker was killed or replaced, and the silence is logged as such, not as 500s.
    log = server.stderr()
    assert "WORKER TIMEOUT" not in log, log[-3000:]
    assert log.count("Booting worker") == WORKERS, log[-3000:]
    assert "database not answering" in log
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
    print(f"\nfrozen {freeze_seconds}s ({WORKERS} workers, {CLIENTS} clients, timeout {TIMEOUT}s): "
          f"first 503 {first_503 - froze:.2f}s after the freeze; slowest answer {slowest:.2f}s; "
          f"{len(while_open)} answers while open, all 503, median "
          f"{statistics.median(open_latencies) * 1000:.1f} ms, slowest "
          f"{max(open_latencies) * 1000:.1f} ms; first success {recovered - thawed:.2f}s "
          f"after the thaw; {Counter(o.status for o in outcomes)}; no worker lost")


# --------------------------------------------------------------- the watcher


def test_watcher_survives_a_frozen_database_and_stops_on_sigterm_while_frozen(cluster, tmp_path):
    url = cluster.url("daemon_health")
    env = service_env(ADMIN_API_KEY=ADMIN_KEY, DATABASE_URL=url,
                      DATABASE_TIMEOUT_SECONDS=str(TIMEOUT), WATCH_INTERVAL_SECONDS="1")
    log_path = tmp_path / "watch.log"
    engine = create_engine(url)

    def last_alive():
        with engine.connect() as conn:
            return conn.execute(text("SELECT last_alive_at FROM service_liveness")).scalar()

    def wait_for(condition, seconds: float, what: str) -> float:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, (
                f"{what} not within {seconds}s\n{log_path.read_text()}")
            time.sleep(0.1)
        return time.monotonic()

    with open(log_path, "wb") as log:
        watcher = subprocess.Popen(
            [str(VENV_BIN / "flask"), "--app", "wsgi", "daemons", "watch"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: last_alive() is not None, 15, "a first tick")
        with frozen(cluster):
            froze = time.monotonic()
            # Each tick gives up within about the timeout and the next one comes.
            noticed = wait_for(lambda: log_path.read_text().count("retrying next tick") >= 2,
                               2 * (TIMEOUT + 2), "two failed ticks")
        before = last_alive()
        thawed = time.monotonic()
        wait_for(lambda: last_alive() > before, 5, "a tick after the thaw")
        back = time.monotonic()
        with frozen(cluster):
            threading.Event().wait(1.5)  # a tick (every 1 s) is under way, waiting
            watcher.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = watcher.wait(timeout=TIMEOUT + 5)
            exited = time.monotonic()
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait(timeout=10)
        engine.dispose()
    output = log_path.read_text()
    assert code == 0 and "Watcher stopped." in output, output
    assert "Traceback" not in output, output
    print(f"\nwatcher: two failed ticks {noticed - froze:.1f}s into the freeze; ticking again "
          f"{back - thawed:.2f}s after the thaw; stopped {exited - signalled:.2f}s after SIGTERM "
          f"while frozen")
