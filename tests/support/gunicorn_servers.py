"""Real gunicorn processes for multi-worker tests and benchmarks: start, probe, stop.

Everything here talks to 127.0.0.1 only, and every wait has a deadline. Each
server is started in a session of its own and stopped by its own pid (SIGTERM,
then wait; SIGKILL to that session only if it will not stop).
"""

from __future__ import annotations

import ast
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_client import concurrently, request
from tests.support.paths import ROOT, VENV_BIN
from tests.support.processes import child_pids, free_port, service_env, stop_process

def gunicorn_setting(name: str) -> Any:
    """The literal gunicorn.conf.py assigns to ``name``, read without running the file.

    Running it would set its environment variables (the metrics folder) in this
    process too.
    """
    path = ROOT / "gunicorn.conf.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path.name} assigns no {name}")


START_DEADLINE_SECONDS = 15.0
LOG_DEADLINE_SECONDS = 5.0
# gunicorn.conf.py's own format plus the worker's pid (the ``p`` atom), so a
# caller can see which worker answered. Logging only: behaviour is unchanged.
ACCESS_LOG_FORMAT = gunicorn_setting("access_log_format") + " pid=%(p)s"
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) .* pid=<(?P<pid>\d+)>')
# The service, as deploy/ runs it; BIND (read by gunicorn.conf.py) gives the address.
SERVICE_ARGUMENTS = ("-c", "gunicorn.conf.py", "--access-logformat", ACCESS_LOG_FORMAT, "wsgi:app")


# ----------------------------------------------------------------------- gunicorn


@dataclass
class Gunicorn:
    process: subprocess.Popen
    port: int
    stdout_path: Path
    stderr_path: Path
    _files: list = field(default_factory=list)
    name: str = "gunicorn"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The pids of the master's workers right now."""
        return child_pids(self.process.pid)

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
            return stop_process(self.process)
        finally:
            for handle in self._files:
                handle.close()
            self._files.clear()


def spawn_gunicorn(workdir: Path, env: Mapping[str, str], *, port: int,
                   arguments: Sequence[str] = SERVICE_ARGUMENTS, cwd: Path = ROOT,
                   name: str = "gunicorn") -> Gunicorn:
    """Start ``gunicorn <arguments>`` in ``cwd`` with ``env`` and BIND set; do not wait.

    ``arguments`` default to the service with gunicorn.conf.py (which reads BIND);
    other arguments must bind with ``--bind`` themselves.
    """
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
            [str(VENV_BIN / "gunicorn"), *arguments],
            cwd=cwd,
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
    return Gunicorn(process, port, stdout_path, stderr_path, [out, err], name)


def wait_until_serving(server: Gunicorn, *, workers: int) -> None:
    """Probe an unlimited, database-free path until ``workers`` distinct pids answered.

    A 404 from Flask proves a worker has imported the app; the admin rate limit
    covers only the blueprint, so probing spends none of it.
    """
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    probe = "/__multiworker_probe__"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}\n{server.output()}")
        try:
            replies = concurrently(
                [lambda: request(server.port, "GET", probe, api_key=None, timeout=2)] * 4, threads=4
            )
        except OSError:
            time.sleep(0.1)
            continue
        assert all(r.status == 404 for r in replies), [r.status for r in replies]
        if len(server.pids_for("GET", probe)) >= workers:
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"{server.name} did not serve from {workers} workers within {START_DEADLINE_SECONDS}s\n"
        f"{server.output()}"
    )


def start_service(workdir: Path, *, workers: int = 2, **variables: str) -> Gunicorn:
    """Start the service on a free port and wait until all ``workers`` answer (stopped if not)."""
    env = service_env(WEB_CONCURRENCY=str(workers), **variables)
    for attempt in range(3):  # the free port can be taken between probe and bind
        server = spawn_gunicorn(workdir / f"gunicorn-{attempt}", env, port=free_port())
        try:
            wait_until_serving(server, workers=workers)
            return server
        except RuntimeError:
            server.stop()
            if attempt < 2 and "Address already in use" in server.stderr():
                continue
            raise
    raise AssertionError("unreachable")


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Start real gunicorn servers (ready on all workers); all stopped at teardown."""
    started: list[Gunicorn] = []

    def start(*, workers: int = 2, **variables: str) -> Gunicorn:
        server = start_service(tmp_path / f"server-{len(started)}", workers=workers, **variables)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
