"""The messages people read in their channels: one template per alert type, overridable.

A template is a title and a body with ``$placeholders`` (``string.Template``:
no logic, nothing to execute, so an operator's template cannot break a send).
ALERT_TEMPLATES_DIR may hold ``<alert type>.txt`` files — the first line the
title, the rest the body — that replace the defaults below. Each is checked at
start-up: a placeholder its type does not have stops the start, rather than
sending "$downFor" to a pager at night.

The message is rendered when the alert is queued and stored with the delivery,
so every retry sends the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any

from sqlalchemy import Row

from app.alerts.alert_events import ID_PREFIX


@dataclass(frozen=True)
class MessageTemplate:
    alert_type: str
    title: str
    body: str


DEFAULTS = {
    t.alert_type: t
    for t in (
        MessageTemplate(
            "daemon.stale",
            "Daemon $daemonId is down: no heartbeat since $lastHeartbeat",
            "$daemonId stopped sending heartbeats. Last heard from at $lastHeartbeat; "
            "stale since $occurredAt.\n"
            "Last status: $status. Current task: $currentTask. "
            "Tasks processed: $tasksProcessed. Version: $version.",
        ),
        MessageTemplate(
            "daemon.recovered",
            "Daemon $daemonId is back after $downFor down",
            "$daemonId registered again at $occurredAt, after being down for $downFor "
            "(stale since $downSince).\n"
            "Status: $status. Current task: $currentTask. Version: $version.",
        ),
        MessageTemplate(
            "daemon.unhealthy",
            "Daemon $daemonId is unhealthy",
            "$daemonId reported itself unhealthy at $occurredAt.\n"
            "Current task: $currentTask. Tasks processed: $tasksProcessed. "
            "Last heartbeat: $lastHeartbeat. Version: $version.",
        ),
        MessageTemplate(
            "daemon.healthy_again",
            "Daemon $daemonId is no longer unhealthy",
            "$daemonId reported status $status at $occurredAt, after being unhealthy for "
            "$unhealthyFor (since $unhealthySince).\n"
            "Current task: $currentTask. Tasks processed: $tasksProcessed.",
        ),
        MessageTemplate(
            "daemon.deregistered",
            "Daemon $daemonId was deregistered",
            "$daemonId was removed from the registry at $occurredAt (a DELETE through the API, "
            "not a missed heartbeat).\n"
            "Last status: $status. Current task: $currentTask. Tasks processed: $tasksProcessed.",
        ),
        # Alerts recorded in alert_events (app/alerts/alert_events.py): their figures are their payload.
        MessageTemplate(
            "daemon.error_rate_high",
            "Daemon $daemonId is failing $errorRate of its tasks",
            "$daemonId failed $failedTasks of $tasks tasks over the last $window ($errorRate) "
            "by $occurredAt: at or above the alert's threshold of $threshold.\n"
            "The alert ends once the rate is at or below $recoveryThreshold.",
        ),
        MessageTemplate(
            "daemon.error_rate_ok",
            "Daemon $daemonId's error rate is down to $errorRate",
            "$daemonId failed $failedTasks of $tasks tasks over the last $window ($errorRate) "
            "by $occurredAt: at or below $recoveryThreshold, so the error-rate alert has ended.",
        ),
        MessageTemplate(
            "region.disrupted",
            "Region $region is disrupted: $silent daemons fell silent together",
            "$silent daemons of region $region stopped sending heartbeats within one TTL, by "
            "$occurredAt: $daemons. $active of its daemons are still heartbeating.\n"
            "A region outage (network, power, the region's own dependencies) is likelier than "
            "$silent daemons failing at once; their own stale alerts are folded into this one.",
        ),
        MessageTemplate(
            "region.recovered",
            "Region $region has recovered",
            "Region $region is no longer disrupted at $occurredAt. Back: $daemons. "
            "Still silent: $stillSilent. Heartbeating: $active.",
        ),
    )
}

_COMMON = ("daemonId", "alertType", "eventId", "occurredAt", "status", "currentTask",
           "tasksProcessed", "version", "lastHeartbeat")
# What each type's template may use: the common fields, and how long the state it ends lasted.
PLACEHOLDERS = {
    alert_type: _COMMON + extra
    for alert_type, extra in {
        "daemon.stale": (),
        "daemon.recovered": ("downSince", "downFor"),
        "daemon.unhealthy": (),
        "daemon.healthy_again": ("unhealthySince", "unhealthyFor"),
        "daemon.deregistered": (),
    }.items()
}
# Alert events' figures, from their payload (app/alerts/error_rate.py); rates read as percentages.
_ERROR_RATE_FIGURES = ("daemonId", "errorRate", "tasks", "failedTasks", "window", "threshold",
                       "recoveryThreshold")
ALERT_EVENT_FIGURES = {"daemon.error_rate_high": _ERROR_RATE_FIGURES,
                       "daemon.error_rate_ok": _ERROR_RATE_FIGURES,
                       # app/alerts/region_outages.py
                       "region.disrupted": ("region", "daemons", "silent", "active"),
                       "region.recovered": ("region", "daemons", "stillSilent", "active")}
_RATES = frozenset({"errorRate", "threshold", "recoveryThreshold"})
PLACEHOLDERS |= {
    alert_type: ("alertType", "eventId", "occurredAt") + figures
    for alert_type, figures in ALERT_EVENT_FIGURES.items()
}
# How the channel shows it (Slack's colour, ntfy's tag): bad news, good news, or neither.
NOTIFY_TYPES = {"daemon.stale": "failure", "daemon.unhealthy": "failure",
                "daemon.error_rate_high": "failure", "region.disrupted": "failure",
                "daemon.recovered": "success", "daemon.healthy_again": "success",
                "daemon.error_rate_ok": "success", "region.recovered": "success"}


class TemplateError(ValueError):
    """A template file that cannot be used; the message names the file and the problem."""


def load(directory: str) -> tuple[MessageTemplate, ...]:
    """The templates in ``directory`` (``<alert type>.txt``), each checked against its type."""
    folder = Path(directory)
    if not folder.is_dir():
        raise TemplateError(f"{directory!r} is not a directory")
    templates = []
    for path in sorted(folder.iterdir()):
        alert_type = path.name.removesuffix(".txt")
        if not path.name.endswith(".txt") or alert_type not in DEFAULTS:
            names = ", ".join(f"{t}.txt" for t in DEFAULTS)
            raise TemplateError(f"{path.name}: name it <alert type>.txt, one of {names}")
        title, _, body = path.read_text(encoding="utf-8").partition("\n")
        template = MessageTemplate(alert_type, title.strip(), body.strip("\n"))
        _check(template, path.name)
        templates.append(template)
    return tuple(templates)


def _check(template: MessageTemplate, name: str) -> None:
    if not template.title:
        raise TemplateError(f"{name}: the first line (the title) is empty")
    allowed = PLACEHOLDERS[template.alert_type]
    for part in (template.title, template.body):
        compiled = Template(part)
        if not compiled.is_valid():
            raise TemplateError(f"{name}: a '$' that starts no placeholder (write '$$' for a dollar sign)")
        unknown = sorted(set(compiled.get_identifiers()) - set(allowed))
        if unknown:
            raise TemplateError(
                f"{name}: {', '.join('$' + u for u in unknown)} is not available for {template.alert_type}; "
                f"it has {', '.join('$' + a for a in allowed)}"
            )


def render(
    event: Row[Any],
    alert_type: str,
    previous: Row[Any] | None,
    overrides: tuple[MessageTemplate, ...] = (),
) -> dict[str, Any]:
    """The message for history ``event`` (raising ``alert_type``), judged against the event before it."""
    return _message(f"evt_{event.id}", alert_type, event.daemon_id,
                    _values(event, alert_type, previous), overrides)


def render_alert_event(
    event: Row[Any], alert_type: str, overrides: tuple[MessageTemplate, ...] = ()
) -> dict[str, Any]:
    """The message for an alert event (app/alerts/alert_events.py), from the figures it carries."""
    event_id = f"{ID_PREFIX}{event.id}"
    values = {"alertType": alert_type, "eventId": event_id, "occurredAt": readable_time(event.occurred_at)}
    for name in ALERT_EVENT_FIGURES[alert_type]:
        value = event.payload.get(name)
        if value is None or value == []:
            values[name] = "none"
        elif isinstance(value, list):
            values[name] = ", ".join(map(str, value))
        else:
            values[name] = f"{value * 100:.3g} %" if name in _RATES else str(value)
    return _message(event_id, alert_type, event.payload.get("daemonId"), values, overrides)


def _message(
    event_id: str, alert_type: str, daemon_id: str | None, values: dict[str, str],
    overrides: tuple[MessageTemplate, ...],
) -> dict[str, Any]:
    template = next((t for t in overrides if t.alert_type == alert_type), DEFAULTS[alert_type])
    return {
        "id": event_id,
        "type": alert_type,
        "daemonId": daemon_id,
        "title": Template(template.title).substitute(values),
        "body": Template(template.body).substitute(values),
        "notifyType": NOTIFY_TYPES.get(alert_type, "info"),
    }


def _values(event: Row[Any], alert_type: str, previous: Row[Any] | None) -> dict[str, str]:
    state = event.state or {}
    values = {
        "daemonId": event.daemon_id,
        "alertType": alert_type,
        "eventId": f"evt_{event.id}",
        "occurredAt": readable_time(event.occurred_at),
        "status": state.get("status") or "unknown",
        "currentTask": state.get("currentTask") or "none",
        "tasksProcessed": str(state.get("tasksProcessed", "unknown")),
        "version": state.get("version") or "unknown",
        "lastHeartbeat": readable_time(state["lastHeartbeat"]) if state.get("lastHeartbeat") else "unknown",
    }
    # The state this event ends began with the event before it (the 'stale' one, the 'unhealthy' one).
    since = lasted = "unknown"
    if previous is not None:
        since = readable_time(previous.occurred_at)
        lasted = readable_duration(event.occurred_at - previous.occurred_at)
    if alert_type == "daemon.recovered":
        values |= {"downSince": since, "downFor": lasted}
    elif alert_type == "daemon.healthy_again":
        values |= {"unhealthySince": since, "unhealthyFor": lasted}
    return values


def probe_message(now: datetime) -> dict[str, Any]:
    """What ``alerts test`` sends to every channel."""
    return {
        "id": f"test_{int(now.timestamp())}",
        "type": "test",
        "daemonId": "-",
        "title": "Test alert from the daemon health service",
        "body": "This channel receives the daemon health service's alerts. "
        f"Sent by 'alerts test' at {readable_time(now)}.",
        "notifyType": "info",
    }


def readable_time(moment: datetime | str) -> str:
    """``2026-01-25 12:01:00 UTC``: an API timestamp, for a person, to the second (cut, like a clock)."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat(sep=" ") + " UTC"


def readable_duration(span: timedelta) -> str:
    """``1 h 4 min``, ``3 min 20 s``, ``12 s``: the two largest units that matter."""
    seconds = max(0, round(span.total_seconds()))
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    for (name, size), (smaller, smaller_size) in zip(units, units[1:]):
        if seconds >= size:
            rest = seconds % size // smaller_size
            return f"{seconds // size} {name}" + (f" {rest} {smaller}" if rest else "")
    return f"{seconds} s"
