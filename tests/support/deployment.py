"""Real deployment parts for end-to-end tests: nginx from deploy/nginx.conf, pairs of
gunicorn instances, a private Postgres cluster, a private redis-server, and threads
that keep load on them (the client is tests/support/http_client.py).

Everything listens on and talks to 127.0.0.1 (or another 127.0.0.0/8 address) only;
every wait has a deadline; every process is started by us, in a session of its
own, and stopped by its own pid.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.gunicorn_servers import Gunicorn, spawn_gunicorn, wait_until_serving
from tests.support.http_client import Reply
from tests.support.paths import ROOT
from tests.support.processes import free_port, stop_process, wait_for_port
from tests.support.unavailable import skip_or_fail

SHIPPED_NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
READY_DEADLINE_SECONDS = 15.0


def established_to(port: int) -> int:
    """Server-side TCP connections on 127.0.0.1:``port`` that are established, including
    those still waiting in the listen backlog for a worker to accept them (Linux /proc)."""
    local = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "01":  # 01 = ESTABLISHED
            count += 1
    return count


# ------------------------------------------------------------------------- nginx


def nginx_binary() -> str:
    """The nginx executable (Debian package ``nginx``); skip locally, fail under CI."""
    for candidate in (shutil.which("nginx"), *NGINX_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    skip_or_fail("nginx is not installed (apt-get install -y nginx)")
    raise AssertionError("unreachable")


def _substitute(text: str, pattern: str, replacement: Any, what: str, *, flags: int = re.M) -> str:
    new, count = re.subn(pattern, replacement, text, flags=flags)
    assert count == 1, (
        f"deploy/nginx.conf: expected exactly one {what} (pattern {pattern!r}), found {count}; "
        "the deployment test builds its config from that file"
    )
    return new


def render_shipped_server_config(
    *, listen: str, upstreams: Sequence[str], directives: Mapping[str, str] | None = None
) -> str:
    """deploy/nginx.conf with only the listen address and the upstream servers' addresses replaced.

    ``directives`` replaces the value of directives that occur exactly once in the
    file (e.g. shorter client timeouts, to keep a test short). Everything else —
    proxy headers, body limit, timeouts not named — is the shipped text.
    """
    text = SHIPPED_NGINX_CONF.read_text()
    text = _substitute(text, r"^(\s*)listen\s+80\s*;", rf"\g<1>listen {listen};", "'listen 80;'")

    def servers(match: re.Match[str]) -> str:
        indent, parameters = match.group(1), match.group(2)  # e.g. " max_fails=0", kept
        return "\n".join(f"{indent}server {upstream}{parameters};" for upstream in upstreams)

    upstream_block = re.search(r"^upstream\s+daemon_health\s*\{.*?^\}", text, flags=re.M | re.S)
    assert upstream_block, "deploy/nginx.conf: no 'upstream daemon_health { ... }' block"
    block = _substitute(upstream_block.group(0),
                        r"^([ \t]*)server\s+127\.0\.0\.1:8000((?:\s+[^\s;]+)*)\s*;",
                        servers, "active 'server 127.0.0.1:8000 ...;' in the upstream")
    text = text[: upstream_block.start()] + block + text[upstream_block.end():]
    for directive, value in (directives or {}).items():
        text = _substitute(text, rf"^(\s*){re.escape(directive)}\s+[^;]*;",
                           rf"\g<1>{directive} {value};", f"'{directive}' directive")
    return text


ACCESS_FORMAT = (
    'log_format deploy_test \'$remote_addr "$request" $status $body_bytes_sent '
    'upstream=$upstream_addr ustatus=$upstream_status xff="$http_x_forwarded_for" '
    'rt=$request_time\';'
)


@dataclass
class Nginx:
    process: subprocess.Popen
    port: int
    prefix: Path
    config_text: str
    server_config_text: str
    _files: list = field(default_factory=list)

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def access_log_path(self) -> Path:
        return self.prefix / "access.log"

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def access_log(self) -> list[str]:
        path = self.access_log_path
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def stop(self) -> int:
        try:
            # SIGQUIT: graceful shutdown of nginx's master and its workers.
            return stop_process(self.process, signal.SIGQUIT, deadline=10)
        finally:
            for handle in self._files:
                handle.close()
            self._files.clear()


def start_nginx(prefix: Path, *, upstream_ports: Sequence[int],
                directives: Mapping[str, str] | None = None) -> Nginx:
    """Run the shipped server block under a minimal main config, in the foreground."""
    binary = nginx_binary()
    prefix.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between probe and bind
        port = free_port()
        server_conf = render_shipped_server_config(
            listen=f"127.0.0.1:{port}",
            upstreams=[f"127.0.0.1:{p}" for p in upstream_ports],
            directives=directives,
        )
        (prefix / "daemon-health.conf").write_text(server_conf)
        # As root, nginx's workers would switch to "nobody", who cannot reach a
        # pytest tmp dir (0700) for client body temp files: keep them as us.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp_paths = "".join(
            f"    {kind}_temp_path {prefix / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        main_conf = (
            "daemon off;\n"
            f"{user}"
            "worker_processes 1;  # one round-robin state: predictable spread\n"
            f"pid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    {ACCESS_FORMAT}\n"
            f"    access_log {prefix / 'access.log'} deploy_test;\n"
            f"{temp_paths}"
            "    # The shipped server block (deploy/nginx.conf), as it would sit in conf.d/:\n"
            f"    include {prefix / 'daemon-health.conf'};\n"
            "}\n"
        )
        conf_path = prefix / "nginx.conf"
        conf_path.write_text(main_conf)
        command = [binary, "-c", str(conf_path), "-p", str(prefix), "-e", str(prefix / "error.log")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=20)
        assert check.returncode == 0, (
            f"nginx -t failed:\n{check.stderr}\n{main_conf}\n{server_conf}")
        out = open(prefix / "stdout.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        server = Nginx(process, port, prefix, main_conf, server_conf, [out])
        try:
            wait_for_port(port, deadline_seconds=READY_DEADLINE_SECONDS,
                          alive=lambda: process.poll() is None)
            return server
        except RuntimeError:
            server.stop()
            last_error = server.errors()
            if "Address already in use" in last_error:
                continue
            raise RuntimeError(f"nginx did not start:\n{last_error}") from None
    raise RuntimeError(f"nginx could not bind a free port:\n{last_error}")


# ---------------------------------------------------------------------- gunicorn


def start_instances(workdir: Path, env: Mapping[str, str], *, count: int,
                    workers: int) -> list[Gunicorn]:
    """``count`` gunicorn instances started side by side, each ready on all its workers."""
    started: list[Gunicorn] = []
    try:
        pending = [spawn_gunicorn(workdir / f"instance-{n}", env, port=free_port())
                   for n in range(count)]
        started.extend(pending)
        for n, server in enumerate(pending):
            for attempt in range(3):
                try:
                    wait_until_serving(server, workers=workers)
                    break
                except RuntimeError:
                    server.stop()
                    if attempt < 2 and "Address already in use" in server.stderr():
                        server = spawn_gunicorn(workdir / f"instance-{n}-retry{attempt}", env,
                                                port=free_port())
                        started.append(server)
                        continue
                    raise
            pending[n] = server
        return pending
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise


# ---------------------------------------------------------- private Postgres


@dataclass
class PrivateCluster:
    """A Postgres 15 cluster of our own: initdb, pg_ctl start/stop, always torn down."""

    root: Path
    port: int
    run_as: str | None  # initdb refuses root: then everything runs as this user

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [*args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", ""),
                                                             "LANG": "C.UTF-8"})

    def initdb(self) -> None:
        result = self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                           "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        assert result.returncode == 0, f"initdb failed:\n{result.stdout}\n{result.stderr}"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=60")
        result = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
                           "-l", str(self.log), "start", "-w", "-t", "30", timeout=45)
        assert result.returncode == 0, (
            f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}\n{self.log_text()[-3000:]}")

    def stop(self, mode: str = "fast") -> None:
        result = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", mode,
                           "-w", "-t", "30", timeout=45)
        assert result.returncode == 0, f"pg_ctl stop failed:\n{result.stdout}\n{result.stderr}"

    def postmaster_pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def teardown(self) -> None:
        """Stop our cluster whatever state it is in (by its own postmaster pid), then delete it."""
        try:
            if self.postmaster_pid() is not None:
                try:
                    self.stop("fast")
                except (AssertionError, subprocess.TimeoutExpired):
                    pid = self.postmaster_pid()
                    if pid is not None:
                        try:
                            os.kill(pid, signal.SIGQUIT)  # postgres' "immediate shutdown"
                        except ProcessLookupError:
                            pass
                        deadline = time.monotonic() + 10
                        while time.monotonic() < deadline and _alive(pid):
                            time.sleep(0.1)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def private_postgres_cluster() -> Iterator[PrivateCluster]:
    """initdb + start a throwaway cluster on a free port; always stopped and removed."""
    if not (PG_BIN / "initdb").exists():
        skip_or_fail(f"{PG_BIN / 'initdb'} not found (apt-get install -y postgresql-15)")
    run_as = None
    if os.geteuid() == 0:
        # initdb refuses to run as root; the Debian package's "postgres" user will do.
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            skip_or_fail("running as root and there is no 'postgres' user for initdb")
        run_as = "postgres"
    # Not under pytest's tmp dir: as root that is 0700, and the cluster's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="daemon-health-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = PrivateCluster(root, free_port(), run_as)
    try:
        cluster.initdb()
        for attempt in range(3):
            try:
                cluster.start()
                break
            except AssertionError:
                if attempt < 2 and "already in use" in cluster.log_text():
                    cluster.port = free_port()
                    continue
                raise
        yield cluster
    finally:
        cluster.teardown()


# ------------------------------------------------------------- private Redis


@dataclass
class PrivateRedis:
    """A redis-server of our own (no persistence), which a test may kill and start again."""

    port: int
    workdir: Path
    process: subprocess.Popen | None = None
    _files: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = open(self.workdir / f"redis-{len(self._files)}.log", "wb")  # noqa: SIM115
        self._files.append(log)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, deadline_seconds=10,
                      alive=lambda: self.process is not None and self.process.poll() is None)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as a crashed host would."""
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL, deadline=10)

    def stop(self) -> None:
        try:
            if self.process is not None:
                stop_process(self.process, signal.SIGTERM, deadline=10)
        finally:
            for handle in self._files:
                handle.close()
            self._files.clear()

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2,
                           socket_timeout=2)


@contextmanager
def private_redis(workdir: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        skip_or_fail("redis-server not installed (apt-get install -y redis-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    server = PrivateRedis(free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def limiter_hits(redis_client, prefix: str, address: str) -> int:
    """How many hits the limiter has counted in Redis for ``address`` under ``prefix``."""
    total = 0
    for key in redis_client.scan_iter(match=f"*{prefix}*", count=1000):
        if f"/{address}/" in key.decode():
            total += int(redis_client.get(key) or 0)
    return total


def limiter_addresses(redis_client, prefix: str) -> set[str]:
    """The client addresses that have a bucket in Redis under ``prefix``."""
    found = set()
    for key in redis_client.scan_iter(match=f"*{prefix}*", count=1000):
        parts = key.decode().split("/")
        index = parts.index(prefix) if prefix in parts else -1
        if 0 <= index < len(parts) - 1:
            found.add(parts[index + 1])
    return found


# ---------------------------------------------------------------------- load


@dataclass
class Outcome:
    kind: str  # what was sent ("register", "heartbeat", "health")
    started: float
    ended: float
    status: int | None = None  # None: no HTTP answer (see error)
    error: str | None = None
    reply: Reply | None = None
    daemon_id: str | None = None
    extra: dict = field(default_factory=dict)


class LoadThreads:
    """Run ``work(index, stop_event, record)`` in ``count`` threads, bounded in time."""

    def __init__(self, count: int, work) -> None:
        self.stop_event = threading.Event()
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self.crashes: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(i, work), daemon=True)
                         for i in range(count)]

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _run(self, index: int, work) -> None:
        try:
            work(index, self.stop_event, self.record)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.crashes.append(exc)

    def __enter__(self) -> LoadThreads:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t for t in self._threads if t.is_alive()]
        assert not stuck, f"{len(stuck)} load threads still running after {timeout}s"
        assert not self.crashes, f"load thread crashed: {self.crashes[0]!r}"

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)
