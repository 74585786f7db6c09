"""A maintenance window as asked for: the body's types here, its rules in ``windows.check``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from app.registry.schemas import DaemonId, Region, ShortText, Timestamp, _Body, storable_text

MAX_DAEMON_IDS = 1000
Reason = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(storable_text)]


class MaintenanceIn(_Body):
    """``POST /api/maintenance``. The selector is ``daemonIds``, ``capability`` or
    ``region``, or none of them for the whole fleet."""

    starts_at: Timestamp = Field(alias="from")
    ends_at: Timestamp = Field(alias="to")
    reason: Reason
    daemon_ids: list[DaemonId] | None = Field(
        default=None, alias="daemonIds", max_length=MAX_DAEMON_IDS
    )
    capability: ShortText | None = None
    region: Region | None = None
