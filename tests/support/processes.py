"""Processes of our own on 127.0.0.1: free ports, a clean environment, bounded waits and stops.

Every process is started in a session of its own and stopped by its own pid
(a signal, then a bounded wait; SIGKILL to that session only if it will not stop).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

STOP_DEADLINE_SECONDS = 25.0  # above gunicorn.conf.py's graceful_timeout (20 s)

# Only these pass from our environment to the servers: none of the service's
# own variables (there are more every week) leaks in; each caller sets exactly
# what it means.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")


def free_port() -> int:
    """A port nobody listens on right now, below the kernel's ephemeral range.

    A port from the ephemeral range (what binding to port 0 gives) can be
    picked as the *source* port of our own connection attempt while the server
    is still starting: the socket then connects to itself and reads back its
    own request. Outside that range no outgoing connection can use it.
    """
    low, _high = _ephemeral_range()
    if low <= 10_000:  # an unusual kernel setting: leave the choice to the OS
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    for _ in range(100):
        port = random.randrange(10_000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: try another
            return port
    raise RuntimeError(f"no free port between 10000 and {low}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def service_env(**overrides: str) -> dict[str, str]:
    """The few inherited basics (see INHERITED_VARIABLES) plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED_VARIABLES}
    env.update(overrides)
    return env


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM,
                 *, deadline: float = STOP_DEADLINE_SECONDS) -> int:
    """Signal our own process by pid and wait; SIGKILL its own session if it will not stop."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # start_new_session: only it and its children
            process.wait(timeout=10)
    return process.returncode


def wait_for_port(port: int, *, deadline_seconds: float,
                  alive: Callable[[], bool] | None = None) -> None:
    """Until something accepts TCP connections on 127.0.0.1:``port`` (bounded)."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"process exited before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {deadline_seconds}s")


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (a gunicorn master's workers), from /proc."""
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
