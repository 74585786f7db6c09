"""wrk runs against one server: the command line for a load, and its output read back."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.gunicorn_servers import Gunicorn

BENCH = Path(__file__).resolve().parent
WRK_THREADS = 2


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

    def argv(self, server: Gunicorn, duration: float) -> list[str]:
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

    def run(self, server: Gunicorn, duration: float) -> WrkResult:
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
