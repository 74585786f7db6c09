"""``daemon-health-agent run [options] -- command args...``: heartbeat for a child process.

The wrapper registers the daemon, heartbeats ``healthy`` while the child runs,
forwards SIGTERM, SIGINT and SIGHUP to it, and exits with its exit code. When
the child ends it deregisters only for a planned stop (exit 0, or a stop signal);
after a crash it leaves the daemon registered, so the service reports it stale.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from daemon_health_agent.client import DEFAULT_TIMEOUT
from daemon_health_agent.heartbeater import Heartbeater

log = logging.getLogger("daemon_health_agent")

API_KEY_ENV = "DAEMON_HEALTH_API_KEY"
# The name older versions read; still accepted, so upgrading breaks no unit file.
LEGACY_API_KEY_ENV = "ADMIN_API_KEY"
# The service's rule, checked here so a typo fails at once instead of a 400 every beat.
DAEMON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daemon-health-agent")
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser(
        "run",
        usage="%(prog)s --url URL --id DAEMON_ID [options] -- command [args...]",
        help="run a command and heartbeat for it while it runs",
        epilog=f"The API key comes from --api-key-file, else ${API_KEY_ENV} (never from the "
        "command line, where other users could read it in the process list).",
    )
    run.add_argument("--url", required=True, help="service base URL, e.g. http://127.0.0.1:8000")
    run.add_argument("--id", required=True, dest="daemon_id", help="daemonId to register")
    run.add_argument("--version", default="unknown", help="version to register (default: unknown)")
    run.add_argument("--capability", action="append", default=[], help="a capability; repeatable")
    run.add_argument("--poll-interval", type=int, default=5000, help="pollInterval in ms (5000)")
    run.add_argument("--ttl", type=float, default=60, help="TTL until the service says its own (60)")
    run.add_argument("--interval", type=float, help="seconds between heartbeats (default: TTL/3)")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="request timeout, s")
    run.add_argument("--api-key-file", type=Path, help=f"API key file (else ${API_KEY_ENV})")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Split at the first "--" ourselves: everything after it is the child's, even
    # options that look like ours.
    split = argv.index("--") if "--" in argv else len(argv)
    parser = _parser()
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("give the command to run after --")
    if not DAEMON_ID.match(args.daemon_id):
        parser.error("--id: 1-128 of A-Z a-z 0-9 _ . : -, starting with a letter or digit")
    api_key = _api_key(parser, args.api_key_file)
    logging.basicConfig(
        level=args.log_level, format="daemon-health-agent: %(levelname)s %(message)s"
    )
    return run(args, api_key, command)


def _api_key(parser: argparse.ArgumentParser, path: Path | None) -> str:
    if path is not None:
        try:
            key = path.read_text().strip()
        except OSError as exc:
            parser.error(f"--api-key-file: {exc.strerror}: {path}")
    else:
        key = (os.environ.get(API_KEY_ENV) or os.environ.get(LEGACY_API_KEY_ENV, "")).strip()
    if not key:
        parser.error(f"no API key: set ${API_KEY_ENV} or pass --api-key-file")
    return key


def run(args: argparse.Namespace, api_key: str, command: list[str]) -> int:
    child: subprocess.Popen[bytes] | None = None
    early: list[int] = []  # signals that arrived before the child existed
    stop_requested = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested |= signum in STOP_SIGNALS
        if child is None:
            early.append(signum)
        else:
            child.send_signal(signum)  # a no-op once the child has been reaped

    try:
        heartbeater = Heartbeater(
            args.url, api_key, args.daemon_id, args.version, args.capability, args.poll_interval,
            ttl_seconds=args.ttl, interval=args.interval, timeout=args.timeout,
        )
    except ValueError as exc:  # a bad --url, --ttl or --interval: before starting anything
        log.error("%s", exc)
        return 2
    # Handlers first, so a SIGTERM during start-up is not lost (or fatal to us).
    for signum in FORWARDED:
        signal.signal(signum, forward)
    # The child gets its own process group so each signal reaches it exactly
    # once, through us: a Ctrl-C in a terminal would otherwise hit it twice.
    # It does not inherit the API key: the worker has no use for it.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in (API_KEY_ENV, LEGACY_API_KEY_ENV)
    }
    try:
        child = subprocess.Popen(command, env=env, process_group=0)
    except OSError as exc:
        log.error("cannot start %s: %s", command[0], exc.strerror)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    for signum in early:
        child.send_signal(signum)

    heartbeater.start()
    returncode = child.wait()  # signal handlers run while we wait (PEP 475 retries the wait)

    planned = returncode == 0 or -returncode in STOP_SIGNALS or stop_requested
    if planned:
        log.info("%s exited (%s): planned stop, deregistering", command[0], _describe(returncode))
    else:
        log.warning(
            "%s exited (%s): leaving %s registered so the service reports it stale",
            command[0], _describe(returncode), args.daemon_id,
        )
    heartbeater.stop(deregister=planned)
    # A child killed by signal N exits like a shell reports it: 128 + N.
    return returncode if returncode >= 0 else 128 - returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"
