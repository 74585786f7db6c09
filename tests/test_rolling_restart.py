"""A rolling restart behind the shipped nginx config loses nothing.

Two gunicorn instances behind deploy/nginx.conf carry steady heartbeats while a
deployer restarts instance A (SIGTERM, wait for it to exit, start it again on
its port, wait until the port accepts connections) and then, a short gap later,
instance B. Every heartbeat sent through nginx in the meantime must be answered
200, in time: none may find nginx still holding A for failed when B stops ("no
live upstreams", a 503), nor wait in the queue of an instance that listens
before it can answer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.support.api import heartbeat_body, registration
from tests.support.deployment import LoadThreads, Outcome, start_instances, start_nginx
from tests.support.gunicorn_servers import Gunicorn, spawn_gunicorn
from tests.support.http_client import KeepAliveClient
from tests.support.processes import service_env, wait_for_port

ADMIN_KEY = "rolling-admin-key-0123456789"
REGISTER = "/api/daemon/register"
HEARTBEAT = "/api/daemon/heartbeat"
WORKERS = 2
GAP_SECONDS = 0.5  # from A listening again to B's SIGTERM
BEATERS = 4
READY_DEADLINE_SECONDS = 60.0  # a busy host may take a while to start gunicorn


def restart(server: Gunicorn, env: dict[str, str], workdir: Path) -> tuple[Gunicorn, float]:
    """What a deployer does: SIGTERM, wait for the exit, start again on the same port,
    wait until the port accepts connections (a TCP check, the quickest pace).

    Returns the new server and how long after the old one exited its port opened.
    """
    assert server.stop() == 0, server.output()
    stopped = time.monotonic()
    fresh = spawn_gunicorn(workdir, env, port=server.port)
    try:
        wait_for_port(fresh.port, deadline_seconds=READY_DEADLINE_SECONDS,
                      alive=lambda: fresh.process.poll() is None)
    except BaseException:
        fresh.stop()
        raise
    return fresh, time.monotonic() - stopped


def test_restarting_each_instance_in_turn_loses_no_request(tmp_path, migrated_postgres_url):
    run = uuid.uuid4().hex[:8]
    env = service_env(WEB_CONCURRENCY=str(WORKERS), ADMIN_API_KEY=ADMIN_KEY,
                      DATABASE_URL=migrated_postgres_url, TRUSTED_PROXY_HOPS="1",
                      ADMIN_RATE_LIMIT="1000000 per minute")
    instances = start_instances(tmp_path / "gunicorn", env, count=2, workers=WORKERS)
    try:
        nginx = start_nginx(tmp_path / "nginx", upstream_ports=[s.port for s in instances])
    except BaseException:
        for server in instances:
            server.stop()
        raise

    def beater(index: int, stop: threading.Event, record) -> None:
        client = KeepAliveClient(nginx.port)
        daemon_id = f"roll-{run}-{index}"
        tasks = 0
        try:
            reply = client.send("POST", REGISTER, body=registration(daemonId=daemon_id),
                                api_key=ADMIN_KEY)
            assert reply.status == 201, reply.body[:300]
            while not stop.is_set():
                tasks += 1
                started = time.monotonic()
                try:
                    reply = client.send("POST", HEARTBEAT, api_key=ADMIN_KEY,
                                        body=heartbeat_body(daemonId=daemon_id, tasksProcessed=tasks))
                    record(Outcome("heartbeat", started, time.monotonic(), reply.status,
                                   reply=reply))
                except OSError as exc:  # incl. http.client errors: no HTTP answer
                    record(Outcome("heartbeat", started, time.monotonic(), error=repr(exc)))
        finally:
            client.close()

    timeline: dict[str, float] = {}
    try:
        with LoadThreads(BEATERS, beater) as load:
            threading.Event().wait(1.0)
            timeline["A stopping"] = time.monotonic()
            instances[0], gap_a = restart(instances[0], env, tmp_path / "gunicorn" / "A-again")
            timeline["A listening"] = time.monotonic()
            threading.Event().wait(GAP_SECONDS)
            timeline["B stopping"] = time.monotonic()
            instances[1], gap_b = restart(instances[1], env, tmp_path / "gunicorn" / "B-again")
            timeline["B listening"] = time.monotonic()
            threading.Event().wait(1.0)
        outcomes = load.snapshot()
    finally:
        nginx.stop()
        for server in reversed(instances):
            server.stop()

    statuses = Counter(o.status if o.error is None else o.error for o in outcomes)
    lost = [o for o in outcomes if o.error is not None or o.status != 200]
    during = [o for o in outcomes if timeline["A stopping"] <= o.started <= timeline["B listening"]]
    summary = (f"{len(outcomes)} heartbeats, {len(during)} of them during the restarts "
               f"(A listened again {gap_a:.2f} s after it exited, B {gap_b:.2f} s; "
               f"gap {GAP_SECONDS} s): "
               f"{dict(statuses)}")
    print(f"\n{summary}")
    assert len(during) >= 50, summary
    assert not lost, (summary, [(o.status, o.error, o.reply and o.reply.body[:120])
                                for o in lost[:5]], nginx.errors()[-2000:])
    # Both restarted instances took heartbeats afterwards.
    for server in instances:
        assert server.pids_for("POST", HEARTBEAT), server.output()
    assert all(json.loads(o.reply.body) == {"success": True} for o in outcomes)
