"""The error-rate alert: a daemon whose tasks fail too often, and its recovery.

``daemon.error_rate_high`` is raised when a daemon finished at least
ALERT_ERROR_RATE_MIN_TASKS tasks over the last ALERT_ERROR_RATE_WINDOW and the
failed share of them reached ALERT_ERROR_RATE_THRESHOLD. ``daemon.error_rate_ok``
closes it once the share over the window is at or below the recovery level
(ALERT_ERROR_RATE_RECOVERY, by default 80 % of the threshold), or the daemon
finished no task in the window. The gap between the two levels, and the open
alert kept in the database (app/alerts/open_alerts.py), mean one alert per
episode however the rate wobbles around the threshold, and however many
watchers evaluate it. Off while the threshold is unset.

The watcher evaluates it every tick from the task buckets, the same figures as
GET /api/daemon/metrics?window=... (app/task_metrics/summaries.py): exact to the
minute, and counting what heartbeats reported since the last sample.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from app.alerts import open_alerts
from app.task_metrics import summaries
from app.uptime.period import Period
from config import Settings

log = logging.getLogger(__name__)

HIGH = "daemon.error_rate_high"
OK = "daemon.error_rate_ok"
# Without ALERT_ERROR_RATE_RECOVERY: recovered at 80 % of the threshold, so a rate
# hovering at the threshold does not raise and close the alert tick after tick.
DEFAULT_RECOVERY_SHARE = 0.8


@dataclass(frozen=True)
class Rule:
    threshold: float
    recovery: float
    window: timedelta
    min_tasks: int

    @classmethod
    def of(cls, settings: Settings) -> Rule | None:
        """The rule the settings ask for; None while the alert is off."""
        threshold = settings.alert_error_rate_threshold
        if threshold is None:
            return None
        recovery = settings.alert_error_rate_recovery
        return cls(
            threshold=threshold,
            # Rounded so that 80 % of 0.1 reads 0.08 in the alert, not 0.08000000000000002.
            recovery=round(threshold * DEFAULT_RECOVERY_SHARE, 9) if recovery is None else recovery,
            window=settings.alert_error_rate_window,
            min_tasks=settings.alert_error_rate_min_tasks,
        )

    def describe(self) -> str:
        """The rule in a line, for the watcher's start-up message."""
        return (
            f"raised at an error rate of {self.threshold:g} over {window_text(self.window)} "
            f"(at least {self.min_tasks} tasks), recovers at {self.recovery:g}"
        )

    def is_high(self, summary: Mapping[str, Any]) -> bool:
        """``summary``: the daemon's task Summary over the window (app/task_metrics/summaries.py)."""
        return summary["tasks"] >= self.min_tasks and summary["errorRate"] >= self.threshold

    def has_recovered(self, summary: Mapping[str, Any]) -> bool:
        # No task in the window: none is failing.
        return summary["errorRate"] is None or summary["errorRate"] <= self.recovery

    def payload(self, daemon_id: str, summary: Mapping[str, Any]) -> dict[str, Any]:
        """The webhook's figures: the daemon's error rate over the window and the rule's levels."""
        return {
            "daemonId": daemon_id,
            "errorRate": summary["errorRate"],
            "tasks": summary["tasks"],
            "failedTasks": summary["failedTasks"],
            "window": window_text(self.window),
            "threshold": self.threshold,
            "recoveryThreshold": self.recovery,
        }


def window_text(window: timedelta) -> str:
    """A window as ALERT_ERROR_RATE_WINDOW spells it (15m, 1h)."""
    minutes = int(window.total_seconds()) // 60
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


@dataclass
class Changes:
    raised: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)


def evaluate(conn: Connection, rule: Rule, *, now: datetime) -> Changes:
    """Raise or close each daemon's alert by its rate over the window ending now.

    Only the alerts that change are written, and only the watcher whose write
    changed the open alert records the event, so racing watchers alert once.
    """
    changes = Changes()
    with conn.begin():
        counts = summaries.per_daemon(conn, Period(start=now - rule.window, end=now, now=now))
        windows = {daemon_id: summaries.summary(c) for daemon_id, c in counts.items()}
        already = open_alerts.subjects(conn, HIGH)
        for daemon_id, summary in windows.items():
            if daemon_id not in already and rule.is_high(summary):
                if open_alerts.raise_once(conn, HIGH, daemon_id, rule.payload(daemon_id, summary), now=now):
                    changes.raised.append(daemon_id)
        for daemon_id in sorted(already):
            summary = windows.get(daemon_id) or summaries.summary(summaries.zero_counts())
            if rule.has_recovered(summary):
                if open_alerts.recover_once(conn, HIGH, daemon_id, OK, rule.payload(daemon_id, summary), now=now):
                    changes.recovered.append(daemon_id)
    for daemon_id in changes.raised:
        log.info("error rate high: %s", daemon_id)
    for daemon_id in changes.recovered:
        log.info("error rate back to normal: %s", daemon_id)
    return changes
