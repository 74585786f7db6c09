"""The agent's Leader against the real service over real HTTP: one leader among competing
daemons, terms that end when the lease is lost, and failover after the leader is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app
from app.http.context import database
from app.models import daemons, lease_holds
from tests.support.agent import AGENT_DIR, Reader, serving, wait_for, wipe
from tests.support.api import API_KEY, registration
from tests.support.live_server import InFlight
from tests.support.paths import ROOT

from daemon_health_agent import Heartbeater, Leader  # isort: skip - importable once tests.support.agent ran

INTERVAL = 0.05
LEASE = "cron"


@dataclass
class Candidate:
    """One daemon competing for the lease: its heartbeater, its leader, what they were told."""

    heartbeater: Heartbeater
    leader: Leader
    ticks: list[int] = field(default_factory=list)
    lost: list[tuple[int, str]] = field(default_factory=list)


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    with serving(app) as (url, _):
        yield url


@pytest.fixture
def candidates() -> Iterator[Callable[..., Candidate]]:
    made: list[Candidate] = []

    def make(url: str, daemon_id: str, *, ttl_seconds: float = 60) -> Candidate:
        heartbeater = Heartbeater(url, API_KEY, daemon_id, "1.0", ["cron"], 1000,
                                  ttl_seconds=ttl_seconds, interval=INTERVAL, timeout=2.0)
        candidate = Candidate(heartbeater, None)  # type: ignore[arg-type]
        candidate.leader = Leader(heartbeater, LEASE, candidate.ticks.append, interval=INTERVAL,
                                  on_lost=lambda token, reason: candidate.lost.append((token, reason)))
        made.append(candidate)
        heartbeater.start()
        candidate.leader.start()
        return candidate

    yield make
    for candidate in made:
        candidate.leader.stop()
        candidate.heartbeater.stop()


def _leader_of(*competing: Candidate) -> Candidate:
    return wait_for(lambda: next((c for c in competing if c.ticks), None), what="a leader")


def test_of_two_competing_agents_exactly_one_runs_the_callback(live, candidates, app) -> None:
    a, b = candidates(live, "daemon_a"), candidates(live, "daemon_b")
    leader = _leader_of(a, b)
    standby = b if leader is a else a
    time.sleep(0.5)  # ten rounds of both asking
    assert set(leader.ticks) == {1} and len(leader.ticks) > 3
    assert standby.ticks == [] and standby.lost == []
    listed = Reader(app).client.get("/api/leases", headers={"X-API-Key": API_KEY}).get_json()
    assert listed["leases"][0]["holder"] == leader.heartbeater.daemon_id


def test_stopping_the_leader_releases_and_the_standby_takes_over(live, candidates) -> None:
    a, b = candidates(live, "daemon_a"), candidates(live, "daemon_b")
    leader = _leader_of(a, b)
    standby = b if leader is a else a
    stopped = time.monotonic()
    leader.leader.stop()
    assert leader.lost == [(1, "stopped")]
    wait_for(lambda: standby.ticks, what="the standby to lead")
    assert standby.ticks[0] == 2
    # No TTL to wait out: the standby's next try after the release.
    assert time.monotonic() - stopped < 1.0


def test_an_operators_deregistration_ends_the_term_until_an_operator_registers_it(
    live, candidates, app
) -> None:
    a = candidates(live, "daemon_a")
    wait_for(lambda: a.ticks, what="a to lead")
    reader = Reader(app)
    reader.delete("daemon_a")  # an operator deregisters it: the lease goes with the session
    wait_for(lambda: a.lost, what="a to learn it lost the lease")
    assert a.lost[0][0] == 1
    ticks_then = len(a.ticks)
    # A planned stop: the agent does not register itself again, so no new term begins.
    wait_for(lambda: a.heartbeater.deregistered_by_operator, what="a to see the planned stop")
    time.sleep(0.3)
    assert len(a.ticks) == ticks_then
    # An operator lifts it; the lease being free, a leads again: a new term, a new token.
    registered = reader.client.post("/api/daemon/register", json=registration(daemonId="daemon_a"),
                                    headers={"X-API-Key": API_KEY})
    assert registered.status_code == 201
    wait_for(lambda: len(a.ticks) > ticks_then and a.ticks[-1] == 2, what="a new term")
    assert set(a.ticks[ticks_then:]) == {2}


class Gate:
    """WSGI middleware whose requests a test can pause, to act between two of an agent's."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.requests = InFlight()

    def __call__(self, environ: dict, start_response: Callable) -> object:
        with self.requests.entered():
            return self.app(environ, start_response)


def test_a_lease_taken_by_another_daemon_ends_the_term_on_409(candidates, app) -> None:
    gate = Gate(app)
    with serving(gate) as (url, _):
        a = candidates(url, "daemon_a")
        wait_for(lambda: a.ticks, what="a to lead")
        reader = Reader(app)
        a.heartbeater.stop(deregister=False)
        # Between two of a's requests (its leader asks every 50 ms), its session is replaced
        # by a new one and another daemon takes the lease, as after a partition: a's next
        # request is a 409.
        with gate.requests.paused():
            for daemon_id in ("daemon_a", "daemon_b"):
                registered = reader.client.post("/api/daemon/register",
                                                json=registration(daemonId=daemon_id),
                                                headers={"X-API-Key": API_KEY})
                assert registered.status_code == 201
            taken = reader.client.post(f"/api/leases/{LEASE}", json={"daemonId": "daemon_b"},
                                       headers={"X-API-Key": API_KEY})
            assert taken.status_code == 200
        wait_for(lambda: a.lost, what="a to learn it lost the lease")
        assert a.lost == [(1, "lease held by daemon_b")]
        ticks_then = len(a.ticks)
        time.sleep(0.3)
        assert len(a.ticks) == ticks_then  # no callback after the loss


def test_heartbeats_failing_end_the_term_within_the_ttl(app, make_app, candidates) -> None:
    # The service's TTL is what the agent paces itself by (its registration answer says it);
    # ``app`` wiped the tables.
    with serving(make_app(daemon_ttl_seconds=1)) as (url, _):
        a = candidates(url, "daemon_a", ttl_seconds=1.0)
        wait_for(lambda: a.ticks, what="a to lead")
        stopped = time.monotonic()
    # The service is gone: no beat or confirmation reaches it. The term must end
    # before the TTL of the last accepted beat runs out.
    wait_for(lambda: a.lost, timeout=3, what="a to give up the lease")
    assert time.monotonic() - stopped <= 1.0 + 0.5  # the TTL, and a busy host's slack
    assert a.lost == [(1, "this daemon's heartbeats stopped reaching the service")]
    ticks_then = len(a.ticks)
    time.sleep(0.2)
    assert len(a.ticks) == ticks_then


# -- failover after the leader's process is killed -------------------------------------------

TTL = 2
RETRY = 0.2
SLACK = 0.5  # a request's time on a busy host


class DaemonProcess:
    """A leader_daemon.py process and the lines it printed."""

    def __init__(self, url: str, daemon_id: str) -> None:
        self.daemon_id = daemon_id
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/support/leader_daemon.py"), url, daemon_id, LEASE,
             str(TTL), str(RETRY)],
            env={**os.environ, "PYTHONPATH": str(AGENT_DIR), "DAEMON_HEALTH_API_KEY": API_KEY},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def ticked(self, token: int) -> bool:
        return f"tick {token}" in self.lines

    def close(self) -> None:
        self.process.stdin.close()  # a clean stop, if it still runs
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        self.process.stdout.close()


def test_a_standby_takes_over_within_one_ttl_and_one_retry_of_the_killed_leaders_last_beat(settings) -> None:
    # The service on the real clock with a 2 s TTL; two daemon processes compete.
    app = wipe(create_app(replace(settings, daemon_ttl_seconds=TTL)))
    try:
        with serving(app) as (url, _):
            processes = [DaemonProcess(url, "daemon_a"), DaemonProcess(url, "daemon_b")]
            try:
                leader = wait_for(lambda: next((p for p in processes if p.ticked(1)), None),
                                  timeout=10, what="a leader")
                standby = next(p for p in processes if p is not leader)
                os.kill(leader.process.pid, signal.SIGKILL)  # as a user would: kill -9
                leader.process.wait()
                wait_for(lambda: standby.ticked(2), timeout=TTL + 5, what="the standby to lead")
            finally:
                for process in processes:
                    process.close()
        with database(app).engine.connect() as conn:
            last_beat = conn.execute(
                select(daemons.c.last_heartbeat).where(daemons.c.daemon_id == leader.daemon_id)
            ).scalar_one()
            holds = conn.execute(
                select(lease_holds.c.holder, lease_holds.c.token, lease_holds.c.acquired_at,
                       lease_holds.c.ended_at, lease_holds.c.end_reason).order_by(lease_holds.c.token)
            ).all()
    finally:
        database(app).dispose()
    assert [(h.holder, h.token) for h in holds] == [(leader.daemon_id, 1), (standby.daemon_id, 2)]
    failover = (holds[1].acquired_at - last_beat).total_seconds()
    print(f"\nfailover: {failover:.3f} s after the killed leader's last heartbeat (TTL {TTL} s, retry {RETRY} s)")
    # Not before the TTL ran out (the lease was the leader's until then), and at most one retry later.
    assert TTL < failover <= TTL + RETRY + SLACK
    # Its hold ended where its TTL ran out.
    assert (holds[0].ended_at - last_beat).total_seconds() == TTL
    assert holds[0].end_reason == "stale"
    assert any(line == "tick 2" for line in standby.lines)
