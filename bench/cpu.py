"""CPU seconds per request, from /proc: the servers' workers, Postgres backends, Redis."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.gunicorn_servers import Gunicorn

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent by a server's workers, by the Postgres backends serving the
    bench database, and by Redis (shared: anyone else's use of it counts too).

    Per request, this moves much less with the load of a shared, noisy machine
    than req/s does: a request costs about the same CPU however long it waits.
    """

    def __init__(self, admin, db_name: str, redis_pid: int | None) -> None:
        self.admin = admin
        self.db_name = db_name
        self.redis_pid = redis_pid

    def _backends(self) -> list[int]:
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (self.db_name,),
        ).fetchall()
        return [row[0] for row in rows]

    def snapshot(self, server: Gunicorn) -> dict[str, dict[int, float]]:
        groups = {
            "worker": server.workers(),
            "postgres": self._backends(),
            "redis": [self.redis_pid] if self.redis_pid else [],
        }
        return {
            name: {pid: t for pid in pids if (t := cpu_seconds(pid)) is not None}
            for name, pids in groups.items()
        }

    @staticmethod
    def per_request_ms(before, after, requests: int) -> dict[str, float]:
        """ms of CPU per request in each group; processes that came or went are left out."""
        out = {}
        for name in after:
            spent = sum(
                after[name][pid] - before[name][pid] for pid in after[name] if pid in before[name]
            )
            out[name] = 1000 * spent / requests if requests else 0.0
        return out
