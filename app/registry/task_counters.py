"""The heartbeat's task counters and how much each heartbeat adds (reset-aware).

A daemon reports cumulative counters since it registered: ``tasksProcessed``,
and optionally ``tasksFailed`` and ``taskTimeMs``. The heartbeat's one UPDATE
turns them into increases, like Prometheus' ``increase()``: the new value minus
the last one, or the whole new value when a counter went down (the daemon
restarted its counting without registering). A registration starts the session's
counters at zero, so the first heartbeat of a session counts all it reports. A
lost heartbeat loses nothing: the next one carries the counters further.

The increases accumulate in the row's ``unsampled_*`` columns until the sampler
moves them into time buckets (app/task_metrics/buckets.py). A daemon that does
not send a field adds nothing for it; ``unsampled_timed_tasks`` counts only the
tasks of heartbeats that carried ``taskTimeMs``, so its average stays honest.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Double, bindparam, case, func, literal_column, or_

from app.models import daemons
from app.registry.schemas import HeartbeatIn

_d = daemons.c
NEW_TASKS = bindparam("new_tasks_processed", type_=BigInteger())
NEW_FAILED = bindparam("new_tasks_failed", type_=BigInteger())
NEW_TASK_MS = bindparam("new_task_time_ms", type_=Double())

# One reset for all three: a counter that went down means the daemon started
# counting again, so whatever the others say is new too. (An absent field
# compares as NULL, which is not a reset.)
# Inline, not bound: the prebuilt UPDATE runs with the heartbeat's parameters only.
_NOTHING = literal_column("0")
_RESET = or_(NEW_TASKS < _d.tasks_processed, NEW_FAILED < _d.tasks_failed, NEW_TASK_MS < _d.task_time_ms)


def _increase(new: ColumnElement[Any], last: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((new.is_(None), _NOTHING), (_RESET, new), else_=new - last)


_TASKS_INCREASE = case((_RESET, NEW_TASKS), else_=NEW_TASKS - _d.tasks_processed)


def heartbeat_values() -> dict[str, ColumnElement[Any]]:
    """The SET clauses a heartbeat adds for the counters (every right side reads the old row)."""
    return {
        "tasks_failed": func.coalesce(NEW_FAILED, _d.tasks_failed),
        "task_time_ms": func.coalesce(NEW_TASK_MS, _d.task_time_ms),
        "unsampled_tasks": _d.unsampled_tasks + _TASKS_INCREASE,
        "unsampled_failed": _d.unsampled_failed + _increase(NEW_FAILED, _d.tasks_failed),
        "unsampled_task_ms": _d.unsampled_task_ms + _increase(NEW_TASK_MS, _d.task_time_ms),
        "unsampled_timed_tasks": _d.unsampled_timed_tasks
        + case((NEW_TASK_MS.is_(None), _NOTHING), else_=_TASKS_INCREASE),
    }


def heartbeat_params(beat: HeartbeatIn) -> dict[str, Any]:
    """The bound values for the new fields (None when the daemon did not send one)."""
    return {"new_tasks_failed": beat.tasks_failed, "new_task_time_ms": beat.task_time_ms}


# A registration starts the session's counters at zero (tasks_processed is set there too).
SESSION_START = {"tasks_failed": 0, "task_time_ms": 0.0}
