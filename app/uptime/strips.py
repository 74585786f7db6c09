"""A few daemons' recent history at a glance: a strip of slots, uptime and tasks, in one read.

The period is cut into equal slots; each slot shows the worst thing that
happened in it (a one-minute outage still shows in a half-hour slot, as a beat
bar would show a missed beat), from the same timeline spans uptime sums. The
dashboard asks for the daemons on screen only, so its cost follows the page,
not the fleet.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from app.registry.schemas import DAEMON_ID_PATTERN, InvalidInput
from app.task_metrics import summaries as task_summaries
from app.uptime import queries
from app.uptime.period import Period

DEFAULT_SLOTS = 48  # half-hour slots over the default 24 h
MAX_SLOTS = 288
MAX_IDS = 100
# What a slot can show, least to most severe; a slot shows the most severe it saw.
# null (no history: before the daemon's first registration, or in the future) is left out.
SEVERITY = ("up", "planned", "degraded", "unhealthy", "down")
_RANK = {state: i for i, state in enumerate(SEVERITY)}
_DAEMON_ID = re.compile(DAEMON_ID_PATTERN)
IDS_RULE = f"must be 1 to {MAX_IDS} daemon ids, comma-separated"


def parse_ids(args: Mapping[str, str]) -> list[str]:
    """``ids``: the daemons asked about, in the order given, without repeats."""
    ids = list(dict.fromkeys(args.get("ids", "").split(",")))
    if not 1 <= len(ids) <= MAX_IDS or not all(_DAEMON_ID.fullmatch(i) for i in ids):
        raise InvalidInput(f"Invalid query parameter ids: {IDS_RULE}", {"ids": IDS_RULE})
    return ids


def _shown(span: Any) -> str:
    if span.state == "up":
        return "up" if span.status == "healthy" else span.status
    return "planned" if span.reason == "deregistered" else "down"


def slot_width(period: Period, slots: int) -> timedelta:
    """The length of one slot, rounded up to a microsecond so ``slots`` of them cover the period."""
    return timedelta(microseconds=math.ceil((period.end - period.start) / timedelta(microseconds=1) / slots))


def strips(period: Period, spans: Sequence[Any], slots: int) -> dict[str, list[str | None]]:
    """Each daemon's slots over the period (``spans`` clipped to it, as queries.spans gives them)."""
    width = slot_width(period, slots)
    found: dict[str, list[str | None]] = defaultdict(lambda: [None] * slots)
    for span in spans:
        strip = found[span.daemon_id]
        shown = _shown(span)
        first = int((span.start - period.start) / width)
        # A span ending exactly on a slot's start does not reach into that slot.
        last = min(math.ceil((span.end - period.start) / width), slots)
        for i in range(first, last):
            if strip[i] is None or _RANK[shown] > _RANK[strip[i]]:
                strip[i] = shown
    return found


def history(
    conn: Connection, period: Period, daemon_ids: Sequence[str], slots: int
) -> dict[str, Any]:
    """For each daemon: its strip, its uptime summary and its tasks per slot, in the order asked.

    A daemon without history in the period gets an empty strip, null uptime and
    zero tasks: a new or unknown id is not an error in a batch.
    """
    width = slot_width(period, slots)
    uptime = {s["daemonId"]: s for s in queries.summaries(conn, period, daemon_ids)}
    found = strips(period, queries.spans(conn, period, daemon_ids), slots)
    daemons = []
    for daemon_id in daemon_ids:
        total, points = task_summaries.series(conn, period, daemon_id, width)
        daemons.append(
            {
                "daemonId": daemon_id,
                "slots": found.get(daemon_id, [None] * slots),
                "uptime": uptime.get(daemon_id),
                "tasks": total,
                "taskSlots": [
                    {"tasks": p["tasks"], "failedTasks": p["failedTasks"]} for p in points
                ],
            }
        )
    return {"slotSeconds": width.total_seconds(), "daemons": daemons}
