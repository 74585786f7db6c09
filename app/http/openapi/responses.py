"""Response shapes, for the document only; tests hold the service to them (schemathesis)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, RootModel

from app.models import Status


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


Timestamp = Field(json_schema_extra={"format": "date-time"})


class Error(_Out):
    error: str = Field(description="What is wrong, in words a person can act on.")
    details: dict[str, str] | None = Field(None, description="Per field or parameter, for a bad request.")
    requestId: str | None = Field(None, description="On a 500: quote it when reporting the bug.")
    reason: str | None = Field(
        None,
        description="On a heartbeat's 404: why the daemon is not registered.",
        json_schema_extra={"enum": ["deregistered", "expired", "unknown"]},
    )


class RegisterResponse(_Out):
    success: bool
    daemonId: str
    registeredAt: str = Timestamp
    ttlSeconds: int = Field(
        description="Silence after which the service calls the daemon stale (DAEMON_TTL_SECONDS): "
        "heartbeat well within it."
    )


class Success(_Out):
    success: bool


class DeregisterResponse(_Out):
    success: bool
    daemonId: str


class DaemonState(_Out):
    daemonId: str
    version: str
    capabilities: list[str]
    pollInterval: int
    registeredAt: str = Timestamp
    lastHeartbeat: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the service received the last heartbeat (its own clock).",
    )
    status: Status
    tasksProcessed: int
    currentTask: str | None
    reportedLastHeartbeat: str | None = Field(
        json_schema_extra={"format": "date-time"}, description="The daemon's own claim."
    )
    region: str | None = Field(
        description="Where it runs: the registration's region, else the instance's SERVICE_REGION."
    )


class HealthResponse(_Out):
    activeDaemons: list[DaemonState]
    stale: list[DaemonState] = Field(description="Expired daemons, each reported exactly once.")
    totalActive: int


class MaintenanceNow(_Out):
    id: int
    reason: str
    to: str = Timestamp


class FleetDaemon(DaemonState):
    expiresAt: str = Timestamp
    stale: bool
    maintenance: MaintenanceNow | None = Field(
        description="The running maintenance window that covers the daemon, or null."
    )


class ShownCounts(_Out):
    stale: int
    unhealthy: int
    degraded: int
    healthy: int


class FleetResponse(_Out):
    daemons: list[FleetDaemon] = Field(description="This page of the daemons that match, in the order asked.")
    totalActive: int = Field(description="Live daemons in the whole fleet, whatever the filters.")
    totalStale: int = Field(description="Expired daemons in the whole fleet, whatever the filters.")
    counts: ShownCounts = Field(description="The whole fleet by what each daemon shows as.")
    matching: int = Field(description="How many daemons match the filters, on every page.")
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class Event(_Out):
    id: int
    daemonId: str
    kind: str = Field(json_schema_extra={"enum": ["registered", "status_changed", "stale", "deregistered"]})
    occurredAt: str = Timestamp
    recordedAt: str = Timestamp
    status: Status | None
    state: DaemonState | None


class EventsResponse(_Out):
    events: list[Event]
    lastId: int


class StatusSeconds(_Out):
    healthy: float
    degraded: float
    unhealthy: float


class UptimeSummary(_Out):
    daemonId: str
    uptimeRatio: float | None = Field(description="up / (up + unplanned down); null when neither.")
    upSeconds: float
    downSeconds: float
    plannedDownSeconds: float
    statusSeconds: StatusSeconds
    incidents: int


class FleetUptime(_Out):
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp
    daemons: list[UptimeSummary]


class DownInterval(_Out):
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp
    reason: str = Field(json_schema_extra={"enum": ["stale", "deregistered", "maintenance"]})
    planned: bool
    ongoing: bool


class DaemonUptime(UptimeSummary):
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp
    downIntervals: list[DownInterval]


class TaskSummary(_Out):
    tasks: int = Field(description="Tasks finished in the period (failed ones included).")
    failedTasks: int
    errorRate: float | None = Field(description="failedTasks / tasks; null without tasks.")
    avgResponseTimeMs: float | None = Field(
        description="Task time / tasks, over tasks whose daemon reported taskTimeMs; null without such tasks."
    )


class SlotTasks(_Out):
    tasks: int
    failedTasks: int


class DaemonHistory(_Out):
    daemonId: str
    slots: list[str | None] = Field(
        description="Per slot, oldest first, the most severe of up < planned < degraded < unhealthy "
        "< down seen in it; null without history (before the first registration, or after now)."
    )
    uptime: UptimeSummary | None = Field(description="Over the period; null without history in it.")
    tasks: TaskSummary
    taskSlots: list[SlotTasks]


class FleetHistory(_Out):
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp
    slotSeconds: float
    daemons: list[DaemonHistory] = Field(description="One per id asked for, in that order.")


class DaemonTaskSummary(TaskSummary):
    daemonId: str


class FleetTaskMetrics(_Out):
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp
    fleet: TaskSummary
    daemons: list[DaemonTaskSummary]


class TaskPoint(TaskSummary):
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp


class DaemonTaskMetrics(DaemonTaskSummary):
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp
    series: list[TaskPoint]


class LeaseState(_Out):
    name: str
    holder: str | None = Field(description="The daemon whose current session holds it; null while free.")
    token: int = Field(
        description="Fencing token: grows by one each time the lease changes hands; while free, the last one issued."
    )
    acquiredAt: str | None = Field(json_schema_extra={"format": "date-time"})
    expiresAt: str | None = Field(
        json_schema_extra={"format": "date-time"},
        description="The holder's expiry: held until then unless its session ends sooner; heartbeats move it.",
    )


class LeasesResponse(_Out):
    leases: list[LeaseState]


class LeaseHeld(_Out):
    error: str
    holder: str
    expiresAt: str = Timestamp


class Region(_Out):
    region: str | None = Field(description="null: the daemons registered without a region.")
    active: int
    stale: int = Field(description="Expired daemons /health has not reported yet.")
    degraded: int = Field(description="Active daemons reporting degraded.")
    unhealthy: int = Field(description="Active daemons reporting unhealthy.")
    disrupted: bool = Field(description="A region outage is ongoing (README, Region outages).")
    lastHeartbeat: str | None = Field(
        json_schema_extra={"format": "date-time"},
        description="The latest heartbeat of any of its daemons in the registry.",
    )


class Regions(RootModel[list[Region]]):
    pass


class MaintenanceWindow(_Out):
    id: int
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Timestamp
    reason: str
    daemonIds: list[str] | None = Field(description="The daemons it covers; null for another selector.")
    capability: str | None = Field(description="It covers every daemon with this capability.")
    region: str | None = Field(description="It covers every daemon in this region.")
    state: str = Field(json_schema_extra={"enum": ["upcoming", "active", "ended", "cancelled"]})
    createdAt: str = Timestamp
    endedEarlyAt: str | None = Field(json_schema_extra={"format": "date-time"})


class MaintenanceWindows(_Out):
    windows: list[MaintenanceWindow]
