"""A daemon competing for a lease with the agent's Leader, as its own process (the failover test).

Usage: leader_daemon.py URL DAEMON_ID LEASE TTL INTERVAL, with the key in
DAEMON_HEALTH_API_KEY and agent/ on PYTHONPATH. Prints ``tick TOKEN`` each time
it runs as leader and ``lost TOKEN REASON`` when a term ends; runs until its
stdin closes or it is killed.
"""

from __future__ import annotations

import os
import sys

from daemon_health_agent import Heartbeater, Leader


def main() -> None:
    url, daemon_id, lease, ttl, interval = sys.argv[1:]
    heartbeater = Heartbeater(
        url, os.environ["DAEMON_HEALTH_API_KEY"], daemon_id, "1.0", ["cron"], 1000,
        ttl_seconds=float(ttl), interval=float(interval), timeout=2.0,
    )
    with heartbeater, Leader(
        heartbeater, lease,
        lambda token: print(f"tick {token}", flush=True),
        interval=float(interval),
        on_lost=lambda token, reason: print(f"lost {token} {reason}", flush=True),
    ):
        sys.stdin.read()


if __name__ == "__main__":
    main()
