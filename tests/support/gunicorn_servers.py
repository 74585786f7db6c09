"""Real gunicorn processes for multi-worker tests: start, probe, talk to, stop.

Everything here talks to 127.0.0.1 only, and every wait has a deadline. Each
server is started in a session of its own and stopped by its own pid (SIGTERM,
then wait; SIGKILL to that session only if it will not stop).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import API_KEY, _postgres_or_skip, postgres_admin_url

PROJECT = Path(__file__).resolve().parent.parent
VENV_BIN = PROJECT / ".venv" / "bin"
REDIS_URL = "redis://127.0.0.1:6379/0"
START_DEADLINE_SECONDS = 15.0
STOP_DEADLINE_SECONDS = 25.0  # above gunicorn.conf.py's graceful_timeout (20 s)
REQUEST_TIMEOUT_SECONDS = 10.0
LOG_DEADLINE_SECONDS = 5.0
# gunicorn.conf.py's own format plus the worker's pid (the ``p`` atom), so a
# test can see which worker answered. Logging only: behaviour is unchanged.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms pid=%(p)s'
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) .* pid=<(?P<pid>\d+)>')

# Only these pass from the test run's environment to the servers: none of the
# service's own variables (there are more every week) leaks in; each test sets
# exactly what it means.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")

# A never-proxied opener: urllib would otherwise honour http_proxy & co.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _fail_in_ci_else_skip(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**overrides: str) -> dict[str, str]:
    """The few inherited basics (see INHERITED_VARIABLES) plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED_VARIABLES}
    env.update(overrides)
    return env


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        assert self.content_type.startswith("application/json"), (
            f"expected JSON, got {self.content_type!r}: {self.body[:300]!r}"
        )
        return json.loads(self.body)


def http(
    port: int,
    method: str,
    path: str,
    *,
    body: Any = None,
    api_key: str | None = API_KEY,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> Reply:
    """One request on a connection of its own (urllib sends Connection: close)."""
    headers = {}
    data = None
    if api_key is not None:
        headers["X-API-Key"] = api_key
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method
    )
    started = time.monotonic()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read(),
                         time.monotonic() - started)
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, dict(error.headers), error.read(),
                         time.monotonic() - started)


def concurrently(calls: list[Callable[[], Reply]], *, threads: int) -> list[Reply]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda call: call(), calls))


# ----------------------------------------------------------------------- gunicorn


@dataclass
class Gunicorn:
    process: subprocess.Popen
    port: int
    stdout_path: Path
    stderr_path: Path
    _files: list = field(default_factory=list)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()[-4000:]}\n--- stderr ---\n{self.stderr()[-4000:]}"

    def access_log(self) -> list[dict[str, str]]:
        """Parsed access-log lines: method, path, status, pid."""
        return [m.groupdict() for m in map(_ACCESS_LINE.search, self.stdout().splitlines()) if m]

    def log_mark(self) -> int:
        """How many access-log lines there are now: pass as ``since`` to pids_for."""
        return len(self.access_log())

    def pids_for(self, method: str, path: str, *, since: int = 0) -> set[str]:
        """The pids of the workers that answered ``method path`` (after line ``since``)."""
        return {line["pid"] for line in self._lines_for(method, path, since)}

    def served_by(self, method: str, path: str, *, count: int, since: int = 0) -> set[str]:
        """Like pids_for, once all ``count`` requests are logged.

        A worker writes its access-log line after the response has gone out, so
        the client can be done before the line is: wait for it (bounded).
        """
        deadline = time.monotonic() + LOG_DEADLINE_SECONDS
        while len(lines := self._lines_for(method, path, since)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(lines)} of {count} {method} {path} logged after "
                    f"{LOG_DEADLINE_SECONDS}s\n{self.output()}"
                )
            time.sleep(0.02)
        return {line["pid"] for line in lines}

    def _lines_for(self, method: str, path: str, since: int) -> list[dict[str, str]]:
        return [
            line for line in self.access_log()[since:]
            if line["method"] == method and line["path"] == path
        ]

    def stop(self) -> int:
        """SIGTERM to our gunicorn master and wait; SIGKILL its own session if stuck."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_DEADLINE_SECONDS)
                except subprocess.TimeoutExpired:
                    # start_new_session made the master the leader of a group
                    # that holds only it and its workers.
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
            return self.process.returncode
        finally:
            for handle in self._files:
                handle.close()
            self._files.clear()


def spawn_gunicorn(workdir: Path, env: Mapping[str, str], *, port: int) -> Gunicorn:
    """Start ``gunicorn -c gunicorn.conf.py wsgi:app`` with ``env``; do not wait."""
    workdir.mkdir(parents=True, exist_ok=True)
    # A control socket (gunicorn >= 25) and temporary files (the metrics folder
    # gunicorn.conf.py makes) of its own: servers never touch each other's.
    runtime, scratch = workdir / "run", workdir / "tmp"
    runtime.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    out, err = open(stdout_path, "wb"), open(stderr_path, "wb")  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py",
             "--access-logformat", ACCESS_LOG_FORMAT, "wsgi:app"],
            cwd=PROJECT,
            env={**env, "BIND": f"127.0.0.1:{port}", "XDG_RUNTIME_DIR": str(runtime),
                 "TMPDIR": str(scratch)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    except BaseException:
        out.close()
        err.close()
        raise
    return Gunicorn(process, port, stdout_path, stderr_path, [out, err])


def wait_until_serving(server: Gunicorn, *, workers: int) -> None:
    """Probe an unlimited, database-free path until ``workers`` distinct pids answered.

    A 404 from Flask proves a worker has imported the app; the admin rate limit
    covers only the blueprint, so probing spends none of it.
    """
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    probe = "/__multiworker_probe__"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}\n{server.output()}")
        try:
            replies = concurrently(
                [lambda: http(server.port, "GET", probe, api_key=None, timeout=2)] * 4, threads=4
            )
        except OSError:
            time.sleep(0.1)
            continue
        assert all(r.status == 404 for r in replies), [r.status for r in replies]
        if len(server.pids_for("GET", probe)) >= workers:
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"gunicorn did not serve from {workers} workers within {START_DEADLINE_SECONDS}s\n"
        f"{server.output()}"
    )


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Start real gunicorn servers (ready on all workers); all stopped at teardown."""
    started: list[Gunicorn] = []

    def start(*, workers: int = 2, **variables: str) -> Gunicorn:
        env = service_env(WEB_CONCURRENCY=str(workers), **variables)
        for attempt in range(3):  # the free port can be taken between probe and bind
            server = spawn_gunicorn(tmp_path / f"gunicorn-{len(started)}", env, port=free_port())
            started.append(server)
            try:
                wait_until_serving(server, workers=workers)
                return server
            except RuntimeError:
                server.stop()
                if attempt < 2 and "Address already in use" in server.stderr():
                    continue
                raise
        raise AssertionError("unreachable")

    yield start
    for server in reversed(started):
        server.stop()


# ----------------------------------------------------------------- Postgres, Redis


@pytest.fixture(scope="module")
def migrated_postgres_url() -> Iterator[str]:
    """A scratch database of our own, brought up by ``alembic upgrade head``."""
    admin = _postgres_or_skip()
    name = f"daemon_health_mw_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(postgres_admin_url()).set(database=name).render_as_string(
            hide_password=False
        )
        migrate = subprocess.run(
            [str(VENV_BIN / "alembic"), "upgrade", "head"],
            cwd=PROJECT,
            env=service_env(DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrate.returncode == 0, f"alembic upgrade head failed:\n{migrate.stderr}"
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The local Redis (skip locally / fail under CI when it is not there)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        client.close()
        _fail_in_ci_else_skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    try:
        yield REDIS_URL
    finally:
        client.close()


def delete_redis_keys(url: str, marker: str) -> None:
    """Remove the keys a test created (their names contain its unique ``marker``)."""
    import redis

    with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
        keys = list(client.scan_iter(match=f"*{marker}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A RATELIMIT_KEY_PREFIX no other run shares; its Redis keys are removed after."""
    prefix = f"mw-test-{uuid.uuid4().hex}"
    yield prefix
    delete_redis_keys(redis_url, prefix)
