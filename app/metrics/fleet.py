"""Fleet gauges, read from the database at scrape time: right under any number of
workers, and a scrape never reaps (it leaves /health's stale report alone).

``daemon_health_daemon_up`` outlives the reap: a daemon whose last event is
``stale`` stays at 0 after /health removed its row, until it registers again
(back to 1) or is deregistered (the series ends). Otherwise whoever reads
/health would end the series, and with it any alert on ``== 0``.
``daemon_health_daemon_maintenance`` has the same daemons: 1 while a running
maintenance window covers one, so the DaemonDown rule can leave it alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Row, func, select

from app.models import DELIVERY_STATES, STATUSES, alert_deliveries, daemon_events, daemons
from app.maintenance import coverage
from app.registry import expiry


class FleetCollector(Collector):
    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now

    def collect(self) -> Iterator[Metric]:
        rows = self.conn.execute(
            select(
                daemons.c.daemon_id,
                daemons.c.status,
                daemons.c.last_heartbeat,
                daemons.c.tasks_processed,
                daemons.c.tasks_failed,
                daemons.c.task_time_ms,
                daemons.c.capabilities,
                daemons.c.region,
                expiry.live(self.now).label("alive"),
            ).order_by(daemons.c.daemon_id)
        ).all()
        up = GaugeMetricFamily(
            "daemon_health_daemon_up",
            "1 while the daemon heartbeats within its TTL; 0 once expired, until it registers again.",
            labels=["daemon_id"],
        )
        status = GaugeMetricFamily(
            "daemon_health_daemon_status",
            "The status the daemon last reported: 1 for the current one.",
            labels=["daemon_id", "status"],
        )
        last_seen = GaugeMetricFamily(
            "daemon_health_daemon_last_heartbeat_timestamp_seconds",
            "When the service last received a heartbeat (Unix time).",
            labels=["daemon_id"],
        )
        tasks = CounterMetricFamily(
            "daemon_health_daemon_tasks_processed",
            "Tasks the daemon reports having processed (resets when it re-registers).",
            labels=["daemon_id"],
        )
        # The daemon's own session counters, so rate() over them gives /api/daemon/metrics' figures.
        failed = CounterMetricFamily(
            "daemon_health_daemon_tasks_failed",
            "Failed tasks the daemon reports, among tasks processed (resets when it re-registers).",
            labels=["daemon_id"],
        )
        task_seconds = CounterMetricFamily(
            "daemon_health_daemon_task_seconds",
            "Time the daemon reports having spent on tasks (resets when it re-registers).",
            labels=["daemon_id"],
        )
        maintenance = GaugeMetricFamily(
            "daemon_health_daemon_maintenance",
            "1 while a running maintenance window covers the daemon (planned work), else 0.",
            labels=["daemon_id"],
        )
        windows = coverage.active_windows(self.conn, at=self.now)

        def planned(daemon_id: str, capabilities: list[str], region: str | None) -> float:
            return 0.0 if coverage.covering(windows, daemon_id, capabilities, region) is None else 1.0

        counts = {"active": 0, "stale": 0}
        for row in rows:
            alive = row.alive
            counts["active" if alive else "stale"] += 1
            up.add_metric([row.daemon_id], 1.0 if alive else 0.0)
            maintenance.add_metric([row.daemon_id], planned(row.daemon_id, row.capabilities, row.region))
            for name in STATUSES:
                status.add_metric([row.daemon_id, name], 1.0 if row.status == name else 0.0)
            last_seen.add_metric([row.daemon_id], row.last_heartbeat.timestamp())
            tasks.add_metric([row.daemon_id], float(row.tasks_processed))
            failed.add_metric([row.daemon_id], float(row.tasks_failed))
            task_seconds.add_metric([row.daemon_id], row.task_time_ms / 1000.0)
        for daemon_id, snapshot in self._reaped_while_down():
            up.add_metric([daemon_id], 0.0)
            last = snapshot or {}
            maintenance.add_metric(
                [daemon_id], planned(daemon_id, last.get("capabilities") or [], last.get("region"))
            )
        fleet = GaugeMetricFamily(
            "daemon_health_daemons", "Daemons in the registry, by state.", labels=["state"]
        )
        for state, count in counts.items():
            fleet.add_metric([state], float(count))
        yield from (up, maintenance, status, last_seen, tasks, failed, task_seconds, fleet)
        yield self._deliveries()

    def _reaped_while_down(self) -> list[Row[Any]]:
        """Daemons whose row is gone and whose last event says they went stale, with its snapshot."""
        e = daemon_events
        return list(
            self.conn.execute(
                select(e.c.daemon_id, e.c.state)
                .where(
                    e.c.ended_at.is_(None),  # the daemon's last event (the one still open)
                    e.c.kind == "stale",
                    e.c.daemon_id.not_in(select(daemons.c.daemon_id)),
                )
                .order_by(e.c.daemon_id)
            )
        )

    def _deliveries(self) -> Metric:
        family = GaugeMetricFamily(
            "daemon_health_alert_deliveries",
            "Alert deliveries (webhooks and channels) in the outbox, by state.",
            labels=["state"],
        )
        found = dict(
            self.conn.execute(
                select(alert_deliveries.c.state, func.count()).group_by(alert_deliveries.c.state)
            ).all()
        )
        for state in DELIVERY_STATES:
            family.add_metric([state], float(found.get(state, 0)))
        return family
