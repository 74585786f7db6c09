"""The daemon agent (agent/daemon_health_agent) against the real service over real HTTP.

The service runs in a thread on a free 127.0.0.1 port, on SQLite and on Postgres.
Its staleness clock is the injected FrozenClock, so expiry happens when a test
moves it; the agent runs on real time with intervals of a tenth of a second.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.support.agent import (
    AGENT_DIR,
    Reader,
    Recorder,
    new_daemon_id,
    serving,
    wait_for,
    wipe,
)
from tests.support.api import API_KEY, HEADERS, registration
from tests.support.clocks import FrozenClock
from tests.support.processes import free_port

from daemon_health_agent import (  # isort: skip - importable once tests.support.agent ran
    Heartbeater,
    NotRegistered,
    RequestRejected,
    ServiceUnavailable,
    parse_retry_after,
)
from daemon_health_agent.client import _http_error  # isort: skip

INTERVAL = 0.1


@pytest.fixture
def live(app: Flask) -> Iterator[tuple[str, Recorder]]:
    with serving(app) as served:
        yield served


@pytest.fixture
def reader(app: Flask) -> Reader:
    return Reader(app)


@pytest.fixture
def agents() -> Iterator[Callable[..., Heartbeater]]:
    """``agents(url, daemon_id, **kwargs)``: a fast Heartbeater, stopped (kept registered) after."""
    made: list[Heartbeater] = []

    def make(url: str, daemon_id: str, **kwargs: Any) -> Heartbeater:
        kwargs.setdefault("interval", INTERVAL)
        kwargs.setdefault("timeout", 2.0)
        agent = Heartbeater(url, API_KEY, daemon_id, "1.0", ["queue", "cron"], 5000, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop(deregister=False)


@pytest.fixture(autouse=True)
def agent_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="daemon_health_agent")
    yield caplog
    assert API_KEY not in caplog.text, "the agent logged the API key"


# -- the library -------------------------------------------------------------


def test_registers_and_heartbeats_what_the_callback_reports(live, reader, agents) -> None:
    url, recorder = live
    daemon_id = new_daemon_id()
    tasks = {"done": 0}

    def report() -> dict[str, Any]:
        tasks["done"] += 1
        return {"status": "degraded", "tasksProcessed": tasks["done"], "currentTask": "evt_7"}

    agent = agents(url, daemon_id, status_callback=report).start()
    assert agent.wait_registered(5)
    state = wait_for(
        lambda: (s := reader.daemon(daemon_id)) and s["tasksProcessed"] >= 3 and s,
        what="three heartbeats carrying the callback's count",
    )
    assert state["version"] == "1.0"
    assert state["capabilities"] == ["queue", "cron"]
    assert state["pollInterval"] == 5000
    assert state["status"] == "degraded"
    assert state["currentTask"] == "evt_7"
    assert state["registeredAt"].endswith("Z") and state["reportedLastHeartbeat"].endswith("Z")
    assert daemon_id in reader.fleet_ids()
    assert [c.path for c in recorder.calls[:2]] == ["/api/daemon/register", "/api/daemon/heartbeat"]
    assert {c.status for c in recorder.calls} == {200, 201}


def test_a_failing_callback_reports_degraded_and_beats_on(live, reader, agents) -> None:
    url, recorder = live
    daemon_id = new_daemon_id()
    broken = {"yes": True}

    def report() -> dict[str, Any]:
        if broken["yes"]:
            raise RuntimeError("the host's own health check is broken")
        return {"tasksProcessed": 9}

    agent = agents(url, daemon_id, status_callback=report).start()
    wait_for(lambda: (s := reader.daemon(daemon_id)) and s["status"] == "degraded", what="degraded")
    beats = len(recorder.of("/heartbeat"))
    wait_for(lambda: len(recorder.of("/heartbeat")) >= beats + 3, what="more heartbeats")
    broken["yes"] = False
    state = wait_for(lambda: (s := reader.daemon(daemon_id)) and s["status"] == "healthy" and s)
    assert state["tasksProcessed"] == 9
    assert agent.registered


def test_registers_again_once_the_service_let_it_expire(
    live, reader, agents, clock: FrozenClock
) -> None:
    url, recorder = live
    daemon_id = new_daemon_id()
    agent = agents(url, daemon_id).start()
    wait_for(lambda: reader.daemon(daemon_id), what="registration")
    clock.advance(61)  # past the service's 60 s TTL: the next heartbeat gets 404 (expired)
    wait_for(lambda: len(recorder.of("/register")) == 2, what="a second registration")
    assert any(c.status == 404 for c in recorder.of("/heartbeat"))
    assert not agent.deregistered_by_operator
    wait_for(lambda: reader.daemon(daemon_id), what="the daemon live again")
    assert reader.event_kinds(daemon_id) == ["registered", "stale", "registered"]


def test_an_operators_deregistration_holds_until_an_operator_registers_it(
    live, reader, agents, agent_logs
) -> None:
    url, recorder = live
    daemon_id = new_daemon_id()
    agent = agents(url, daemon_id).start()
    wait_for(lambda: reader.daemon(daemon_id), what="registration")
    reader.delete(daemon_id)
    wait_for(lambda: agent.deregistered_by_operator, what="the agent to see the planned stop")
    refused = len(recorder.of("/heartbeat"))
    wait_for(lambda: len(recorder.of("/heartbeat")) >= refused + 5, what="five more heartbeats")
    # It kept asking, and was told no, but did not register the daemon again.
    assert len(recorder.of("/register")) == 1
    assert reader.daemon(daemon_id) is None and not agent.registered
    assert reader.event_kinds(daemon_id) == ["registered", "deregistered"]
    assert sum("an operator deregistered" in r.message for r in agent_logs.records) == 1  # said once
    # The lift: an operator registers the daemon; the agent's next heartbeat carries on.
    lifted = reader.client.post(
        "/api/daemon/register", json=registration(daemonId=daemon_id), headers=HEADERS
    )
    assert lifted.status_code == 201
    wait_for(lambda: agent.registered and not agent.deregistered_by_operator, what="the lift")
    beats = len(recorder.of("/heartbeat"))
    wait_for(lambda: len(recorder.of("/heartbeat")) >= beats + 2, what="heartbeats after the lift")
    assert {c.status for c in recorder.of("/heartbeat")[beats:]} == {200}
    assert len(recorder.of("/register")) == 1
    assert reader.event_kinds(daemon_id) == ["registered", "deregistered", "registered"]


def test_a_stop_the_service_has_forgotten_holds_no_more(
    app: Flask, live, reader, agents, clock: FrozenClock
) -> None:
    url, recorder = live
    daemon_id = new_daemon_id()
    agent = agents(url, daemon_id).start()
    wait_for(lambda: reader.daemon(daemon_id), what="registration")
    reader.delete(daemon_id)
    wait_for(lambda: agent.deregistered_by_operator, what="the hold")
    clock.advance(91 * 86400)  # past HISTORY_RETENTION_DAYS: pruning forgets the daemon
    pruned = app.test_cli_runner().invoke(args=["daemons", "prune-history"])
    assert pruned.exit_code == 0, pruned.output
    wait_for(lambda: agent.registered, what="the agent to register the daemon again")
    assert not agent.deregistered_by_operator
    assert reader.daemon(daemon_id) is not None
    assert len(recorder.of("/register")) == 2


def test_paces_itself_from_the_services_ttl(make_app, reader, agents) -> None:
    app = wipe(make_app(daemon_ttl_seconds=1))
    with serving(app) as (url, recorder):
        guessing = agents(url, new_daemon_id(), interval=None, ttl_seconds=60).start()
        fixed = agents(url, new_daemon_id(), interval=0.5, ttl_seconds=60).start()
        assert guessing.wait_registered(5) and fixed.wait_registered(5)
        assert guessing.ttl_seconds == 1  # taken from the answer before it counts as registered
        assert guessing.interval == pytest.approx(1 / 3)  # a third of the service's TTL
        assert (fixed.ttl_seconds, fixed.interval) == (1, 0.5)  # an explicit interval stays
        path = "/api/daemon/heartbeat"
        count = len(recorder.of(path))
        wait_for(lambda: len(recorder.of(path)) >= count + 8, what="heartbeats at the new pace")


def test_survives_the_service_being_down_at_start(app: Flask, reader, agents) -> None:
    port = free_port()
    daemon_id = new_daemon_id()
    agent = agents(f"http://127.0.0.1:{port}", daemon_id)
    began = time.monotonic()
    agent.start()  # nothing listens on the port: must neither block nor raise
    assert time.monotonic() - began < 0.5
    time.sleep(0.5)  # several refused attempts, backing off (never longer than the interval)
    assert not agent.registered
    with serving(app, port=port):
        assert agent.wait_registered(5)
        wait_for(lambda: reader.daemon(daemon_id), what="registration once the server is up")
        agent.stop()


def test_honours_retry_after_on_429(make_app, agents) -> None:
    app = wipe(make_app(admin_rate_limit="2 per second"))
    daemon_id = new_daemon_id()
    with serving(app) as (url, recorder):
        agent = agents(url, daemon_id, interval=0.05).start()  # asks for ~20 calls a second
        wait_for(lambda: len([c for c in recorder.calls if c.status == 429]) >= 2, what="two 429s")
        calls = list(recorder.calls)
        agent.stop(deregister=False)
    limited = [i for i, c in enumerate(calls) if c.status == 429]
    for i in limited[:-1] if limited[-1] == len(calls) - 1 else limited:
        retry_after = float(calls[i].retry_after)
        assert retry_after >= 1
        # The next call came only after Retry-After (a little early allowed for timing).
        assert calls[i + 1].at - calls[i].at >= retry_after - 0.05, calls
    # Without Retry-After it would have retried in at most one 0.05 s interval.
    assert len(calls) < 10, [c.status for c in calls]
    assert Reader(app).daemon(daemon_id) is not None


def test_stop_deregisters(live, reader, agents) -> None:
    url, _ = live
    daemon_id = new_daemon_id()
    agent = agents(url, daemon_id).start()
    wait_for(lambda: reader.daemon(daemon_id), what="registration")
    agent.stop(deregister=True)
    assert daemon_id not in reader.fleet_ids()
    assert reader.event_kinds(daemon_id)[-1] == "deregistered"


def test_context_manager_deregisters_only_on_a_clean_exit(live, reader, agents) -> None:
    url, _ = live
    clean, crashed = new_daemon_id(), new_daemon_id()
    with agents(url, clean) as agent:
        assert agent.wait_registered(5)
    with pytest.raises(RuntimeError), agents(url, crashed) as agent:
        assert agent.wait_registered(5)
        raise RuntimeError("the daemon crashed")
    assert clean not in reader.fleet_ids()
    assert crashed in reader.fleet_ids()  # left to go stale: a crash is an outage
    assert "deregistered" not in reader.event_kinds(crashed)


# A host program that never calls stop(): atexit decides.
HOST = """
import sys
from daemon_health_agent import Heartbeater
agent = Heartbeater(sys.argv[1], sys.argv[2], sys.argv[3], "1.0", [], 1000, interval=0.1).start()
assert agent.wait_registered(5)
if sys.argv[4] == "crash":
    raise RuntimeError("the host crashed")
"""


def test_interpreter_exit_deregisters_unless_the_host_crashed(live, reader) -> None:
    url, _ = live
    outcomes = {}
    for how in ("clean", "crash"):
        daemon_id = new_daemon_id()
        done = subprocess.run(
            [sys.executable, "-c", HOST, url, API_KEY, daemon_id, how],
            env={**os.environ, "PYTHONPATH": str(AGENT_DIR)},
            capture_output=True, text=True, timeout=10,
        )
        assert done.returncode == (0 if how == "clean" else 1), done.stderr
        outcomes[how] = daemon_id in reader.fleet_ids()
    assert outcomes == {"clean": False, "crash": True}


def test_retry_delays_never_exceed_the_heartbeat_interval() -> None:
    agent = Heartbeater("http://127.0.0.1:9", API_KEY, "d", "1", [], 1000, ttl_seconds=60)
    assert agent.interval == 20
    assert max(agent._backoff(failures) for failures in range(1, 30) for _ in range(50)) <= 20
    assert 5 <= agent._backoff(3, retry_after=5) <= 5.5
    assert agent._backoff(1, retry_after=3600) == 60  # a broken header cannot silence it for hours


def test_errors_map_to_what_the_agent_does() -> None:
    unavailable = _http_error("POST /x", 503, {"Retry-After": "5"}, b'{"error": "Database down"}')
    assert isinstance(unavailable, ServiceUnavailable) and unavailable.retry_after == 5
    assert str(unavailable) == "POST /x: HTTP 503: Database down"
    assert isinstance(_http_error("POST /x", 404, {}, b""), NotRegistered)
    assert _http_error("POST /x", 404, {}, b"").reason is None
    why = b'{"error": "Daemon not registered", "reason": "deregistered"}'
    assert _http_error("POST /x", 404, {}, why).reason == "deregistered"
    assert isinstance(_http_error("POST /x", 401, {}, b"{}"), RequestRejected)


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480) == 10
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- the command -------------------------------------------------------------

# The child: note its pid and whether it got the admin key, then wait for the test
# to say with which code to exit.
CHILD = """
import os, sys, time
go, info = sys.argv[1], sys.argv[2]
with open(info, "w") as f:
    f.write(f"{os.getpid()} {'DAEMON_HEALTH_API_KEY' in os.environ or 'ADMIN_API_KEY' in os.environ}")
while not os.path.exists(go):
    time.sleep(0.02)
sys.exit(int(open(go).read()))
"""


@pytest.fixture
def run_wrapped(live, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    url, _ = live
    started: list[subprocess.Popen[str]] = []

    def run(daemon_id: str) -> subprocess.Popen[str]:
        command = [
            sys.executable, "-m", "daemon_health_agent", "run", "--url", url, "--id", daemon_id,
            "--version", "3.1", "--capability", "queue", "--interval", str(INTERVAL),
            "--timeout", "2", "--", sys.executable, "-c", CHILD,
            str(tmp_path / "go"), str(tmp_path / "info"),
        ]
        env = {**os.environ, "PYTHONPATH": str(AGENT_DIR), "DAEMON_HEALTH_API_KEY": API_KEY}
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def tell_child_to_exit(tmp_path: Path, code: int) -> None:
    # Written aside and renamed, so the child never reads a half-written file.
    (tmp_path / "go.tmp").write_text(str(code))
    os.replace(tmp_path / "go.tmp", tmp_path / "go")


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=10)
    assert API_KEY not in stderr, "the wrapper logged the API key"
    return process.returncode, stderr


def child_info(tmp_path: Path) -> tuple[int, bool]:
    text = wait_for(lambda: (tmp_path / "info").exists() and (tmp_path / "info").read_text())
    pid, has_key = text.split()
    return int(pid), has_key == "True"


def test_command_clean_exit_deregisters(run_wrapped, reader, tmp_path: Path) -> None:
    daemon_id = new_daemon_id()
    wrapper = run_wrapped(daemon_id)
    state = wait_for(lambda: reader.daemon(daemon_id), what="the wrapper's registration")
    assert state["version"] == "3.1" and state["capabilities"] == ["queue"]
    assert state["status"] == "healthy"
    _, child_has_key = child_info(tmp_path)
    assert not child_has_key, "the child inherited the admin key"
    tell_child_to_exit(tmp_path, 0)
    returncode, stderr = finish(wrapper)
    assert returncode == 0, stderr
    assert daemon_id not in reader.fleet_ids()
    assert reader.event_kinds(daemon_id)[-1] == "deregistered"


def test_command_crash_passes_the_code_and_does_not_deregister(
    run_wrapped, reader, tmp_path: Path
) -> None:
    daemon_id = new_daemon_id()
    wrapper = run_wrapped(daemon_id)
    wait_for(lambda: reader.daemon(daemon_id), what="the wrapper's registration")
    tell_child_to_exit(tmp_path, 3)
    returncode, stderr = finish(wrapper)
    assert returncode == 3, stderr
    assert daemon_id in reader.fleet_ids()  # the service will report it stale after the TTL
    assert "deregistered" not in reader.event_kinds(daemon_id)


def test_command_sigterm_stops_the_child_and_deregisters(
    run_wrapped, reader, tmp_path: Path
) -> None:
    daemon_id = new_daemon_id()
    wrapper = run_wrapped(daemon_id)
    wait_for(lambda: reader.daemon(daemon_id), what="the wrapper's registration")
    child_pid, _ = child_info(tmp_path)
    wrapper.send_signal(signal.SIGTERM)
    returncode, stderr = finish(wrapper)
    assert returncode == 128 + signal.SIGTERM, stderr  # the child died of the forwarded SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
    assert daemon_id not in reader.fleet_ids()
    assert reader.event_kinds(daemon_id)[-1] == "deregistered"


def test_the_command_sends_no_task_counters(run_wrapped, live, tmp_path: Path) -> None:
    """It cannot know its child's tasks: no tasksFailed or taskTimeMs, and tasksProcessed stays 0."""
    _, recorder = live
    wrapper = run_wrapped(new_daemon_id())
    beats = wait_for(lambda: len(recorder.of("/heartbeat")) >= 2 and recorder.of("/heartbeat"),
                     what="two heartbeats from the wrapper")
    tell_child_to_exit(tmp_path, 0)
    assert finish(wrapper)[0] == 0
    for beat in beats:
        assert beat.status == 200
        assert beat.body["tasksProcessed"] == 0
        assert "tasksFailed" not in beat.body and "taskTimeMs" not in beat.body


@pytest.mark.parametrize("variable", ["DAEMON_HEALTH_API_KEY", "ADMIN_API_KEY"])
def test_the_command_takes_its_key_from_its_variable_or_the_older_name(monkeypatch, variable):
    import argparse

    from daemon_health_agent.cli import _api_key  # isort: skip

    for name in ("DAEMON_HEALTH_API_KEY", "ADMIN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, f" daemon-key-for-{variable} ")
    assert _api_key(argparse.ArgumentParser(), None) == f"daemon-key-for-{variable}"


def test_the_callback_may_report_failures_and_task_time(live, reader, agents, clock: FrozenClock) -> None:
    url, recorder = live
    daemon_id = new_daemon_id()
    done = {"tasks": 0}

    def report() -> dict[str, Any]:
        done["tasks"] += 10
        # Cumulative since start: one task in ten fails, each takes 25 ms.
        return {"tasksProcessed": done["tasks"], "tasksFailed": done["tasks"] // 10, "taskTimeMs": done["tasks"] * 25.0}

    agents(url, daemon_id, status_callback=report).start()
    wait_for(lambda: len(recorder.of("/heartbeat")) >= 3, what="three heartbeats")
    first = recorder.of("/heartbeat")[0].body
    assert (first["tasksProcessed"], first["tasksFailed"], first["taskTimeMs"]) == (10, 1, 250.0)
    # The service's clock stands still, so every beat is in the current minute: ask past it.
    to = (clock.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    response = reader.client.get(
        f"/api/daemon/{daemon_id}/metrics", query_string={"window": "1h", "to": to}, headers=HEADERS
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["tasks"] >= 30
    assert body["failedTasks"] == body["tasks"] // 10
    assert body["errorRate"] == 0.1 and body["avgResponseTimeMs"] == 25.0


def test_counters_the_service_would_refuse_are_left_out(live, reader, agents, caplog) -> None:
    url, recorder = live
    daemon_id = new_daemon_id()

    def report() -> dict[str, Any]:
        return {"tasksProcessed": 5, "tasksFailed": 6, "taskTimeMs": float("nan")}

    agents(url, daemon_id, status_callback=report).start()
    wait_for(lambda: len(recorder.of("/heartbeat")) >= 2, what="two heartbeats")
    assert {c.status for c in recorder.of("/heartbeat")} == {200}
    assert not {"tasksFailed", "taskTimeMs"} & set(recorder.of("/heartbeat")[0].body)
    assert "tasksFailed 6" in caplog.text and "taskTimeMs nan" in caplog.text
