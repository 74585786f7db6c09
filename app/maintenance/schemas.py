"""A maintenance window as asked for: the body's types here, its rules in ``windows.check``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from app.registry.schemas import DaemonId, ShortText, Timestamp, _Body, storable_text

MAX_DAEMON_IDS = 1000
Reason = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(storable_text)]


class MaintenanceIn(_Body):
    """``POST /api/maintenance``. The selector is ``daemonIds`` or ``capability``, or
    neither for the whole fleet (a ``region`` joins them when daemons have regions)."""

    starts_at: Timestamp = Field(alias="from")
    ends_at: Timestamp = Field(alias="to")
    reason: Reason
    daemon_ids: list[DaemonId] | None = Field(
        default=None, alias="daemonIds", max_length=MAX_DAEMON_IDS
    )
    capability: ShortText | None = None
