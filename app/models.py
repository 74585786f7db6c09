"""Tables: the live registry of daemons and the history of what happened to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.store.timestamps import UTCDateTime

Status = Literal["healthy", "degraded", "unhealthy"]
STATUSES: tuple[str, ...] = get_args(Status)
EVENT_KINDS = ("registered", "status_changed", "stale", "deregistered")
# An event that begins an outage, in the words of the daemon_spans view's reason column.
STALE_EVENT = "(CASE WHEN kind IN ('stale', 'deregistered') THEN kind END) = 'stale'"
# suppressed: the event fell inside a maintenance window (app/maintenance/), so it is never sent.
DELIVERY_STATES = ("pending", "delivered", "failed", "suppressed")
# What a maintenance window covers: every daemon, the listed ones, or those with a capability.
MAINTENANCE_SELECTORS = ("fleet", "daemons", "capability", "region")
# The tables an alert delivery's event comes from (app/alerts/outbox.py).
DELIVERY_SOURCES = ("daemon_events", "alert_events")
# How a lease hold ended: released by its holder, or lost with the holder's session.
LEASE_HOLD_ENDS = ("released", "stale", "deregistered", "reregistered")

# Named constraints keep Alembic migrations identical on SQLite and Postgres.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on Postgres so people can query capabilities and snapshots with SQL.
Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer, "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _alerts_pending(table: str) -> Index:
    """The watcher's queue of a table's events not yet turned into deliveries (app/alerts/outbox.py)."""
    condition = text("alerted_at IS NULL")
    return Index(f"ix_{table}_alerts_pending", "id", postgresql_where=condition, sqlite_where=condition)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Daemon(Base):
    """One row per live (or expired but not yet reaped) daemon.

    ``last_heartbeat`` is the service's receipt time; ``expires_at`` is that
    plus the TTL, set in the same write, like a KV entry's TTL. The service's
    clock alone decides staleness; what the daemon said about time is data.
    """

    __tablename__ = "daemons"
    __table_args__ = (
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint("tasks_processed >= 0", name="tasks_processed"),
        # The watcher's range scan for newly expired rows (expiry.expired_unrecorded).
        Index(None, "expires_at"),
        # /health?region= and /api/regions: one region's rows, its expired ones first.
        Index(None, "region", "expires_at"),
    )

    daemon_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    capabilities: Mapped[list[str]] = mapped_column(Json)
    poll_interval: Mapped[int] = mapped_column(Integer)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    session_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Which session this is: a fresh random id per registration (a start time can repeat
    # within a clock tick). Leases belong to a session (app/leases/); '' for sessions
    # started before the column existed.
    session_id: Mapped[str] = mapped_column(String(32), server_default="")
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    tasks_processed: Mapped[int] = mapped_column(BigInteger)
    current_task: Mapped[str | None] = mapped_column(String(256))
    # Set when a watcher recorded this row's expiry, so /health does not record it twice.
    stale_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Fingerprint (app/http/auth.py) of the daemon key that registered this row, never the
    # key; NULL when an admin key did. Only that daemon key (or an admin) may act on it.
    owner_key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The session's last reported failure and task-time counters (beside tasks_processed).
    tasks_failed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    task_time_ms: Mapped[float] = mapped_column(Double, server_default="0")
    # What heartbeats counted (reset-aware increases, app/registry/task_counters.py)
    # and the sampler has not yet moved into the task buckets (app/task_metrics/).
    unsampled_tasks: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unsampled_failed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unsampled_task_ms: Mapped[float] = mapped_column(Double, server_default="0")
    unsampled_timed_tasks: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Where the daemon runs (registration's region, else the instance's SERVICE_REGION).
    region: Mapped[str | None] = mapped_column(String(64))


class DaemonEvent(Base):
    """What happened to a daemon, written only when something changes.

    Steady heartbeats add no rows. ``occurred_at`` is when the change took
    effect (for ``stale``: last heartbeat plus the TTL), ``recorded_at`` when
    the service wrote it; ``status`` is the status in force from then on, until
    ``ended_at``, when the next event took over.
    """

    __tablename__ = "daemon_events"
    __table_args__ = (
        CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
        Index(None, "daemon_id", "occurred_at"),
        Index(None, "occurred_at"),
        # Each daemon's open event, the one the next event will end: one at most,
        # however writers race.
        Index(
            "ix_daemon_events_open",
            "daemon_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        # The stale events, for the timeline's maintenance cover (migration 0014: the
        # predicate is the daemon_spans view's reason column, so Postgres can use it).
        Index(
            "ix_daemon_events_stale",
            "daemon_id",
            "occurred_at",
            postgresql_where=text(STALE_EVENT),
            sqlite_where=text(STALE_EVENT),
        ),
        _alerts_pending("daemon_events"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    daemon_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Where the span this event began ends: the next event's occurred_at (NULL while open).
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a watcher turned this event into alerts (or decided it needs none).
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class _TaskBucket:
    """Tasks finished in one time bucket by one daemon: increases, never running totals.

    ``timed_tasks`` are the tasks of heartbeats that carried ``taskTimeMs``, so
    daemons that do not report task time leave the average alone.
    """

    daemon_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    tasks: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
    task_ms: Mapped[float] = mapped_column(Double)
    timed_tasks: Mapped[int] = mapped_column(BigInteger)


class DaemonTaskMinute(_TaskBucket, Base):
    """One-minute task buckets, kept two days (app/task_metrics/buckets.py)."""

    __tablename__ = "daemon_task_minutes"
    __table_args__ = (Index(None, "bucket"),)


class DaemonTaskHour(_TaskBucket, Base):
    """One-hour task buckets, kept as long as the history (HISTORY_RETENTION_DAYS)."""

    __tablename__ = "daemon_task_hours"
    __table_args__ = (Index(None, "bucket"),)


class AlertEvent(Base):
    """An alert that is not a daemon's status transition (app/alerts/alert_events.py).

    ``subject`` is what it is about (a daemon id, or another name such as a
    region); ``payload`` holds the figures the webhook carries beside the
    common fields. The outbox turns it into deliveries like a history event.
    """

    __tablename__ = "alert_events"
    __table_args__ = (
        Index(None, "occurred_at"),
        _alerts_pending("alert_events"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_type: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    # When a watcher turned this event into deliveries (or decided it needs none).
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OpenAlert(Base):
    """An alert raised and not yet recovered, one per alert type and subject (app/alerts/open_alerts.py).

    The primary key is what makes several watchers raise, and recover, each alert once.
    """

    __tablename__ = "open_alerts"

    alert_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceLiveness(Base):
    """When the service was last seen working (one row, id 1; made by a watcher's tick,
    deleted by a watcher that stops cleanly).

    Refreshed by watcher ticks and, about once a second per process, by API
    traffic. A lapse longer than the TTL means the service or its database was
    down: daemons then get one TTL of grace instead of being declared stale.
    """

    __tablename__ = "service_liveness"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_alive_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceOutage(Base):
    """A lapse of the service longer than the TTL, and how many daemons got grace."""

    __tablename__ = "service_outages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    daemons_graced: Mapped[int] = mapped_column(Integer)


class AlertDelivery(Base):
    """The outbox: one webhook delivery of one alert to one URL, retried until done."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
        CheckConstraint(_in("source", DELIVERY_SOURCES), name="source"),
        # One delivery per event and receiver, however many watchers enqueue it;
        # ids are per source table, so the source is part of the event's name.
        UniqueConstraint("source", "event_id", "url"),
        # The sender's scan: due pending deliveries, oldest first.
        Index(None, "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16), server_default="daemon_events")
    event_id: Mapped[int] = mapped_column(BigInteger)
    alert_type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When it was given up (its last answer came back), for operators reading 'alerts failed'.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The maintenance window that kept this alert from being sent (state 'suppressed').
    maintenance_window_id: Mapped[int | None] = mapped_column(BigInteger)


class MaintenanceWindow(Base):
    """Planned work: while it runs, the daemons it covers send no alerts and their
    downtime counts as planned (the ``daemon_timeline`` view, migration 0013).

    Ending one early sets ``ends_at`` to that moment and keeps the row, so uptime
    already reported stays as it was.
    """

    __tablename__ = "maintenance_windows"
    __table_args__ = (
        CheckConstraint(_in("selector", MAINTENANCE_SELECTORS), name="selector"),
        CheckConstraint("starts_at < ends_at", name="runs_forwards"),
        CheckConstraint("(selector = 'capability') = (capability IS NOT NULL)", name="capability"),
        CheckConstraint("(selector = 'region') = (region IS NOT NULL)", name="region"),
        # Current and upcoming windows: those that have not ended.
        Index(None, "ends_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(256))
    selector: Mapped[str] = mapped_column(String(16))
    capability: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When an operator ended it before its planned end (ends_at was moved there).
    ended_early_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MaintenanceWindowDaemon(Base):
    """The daemons a window with ``selector = 'daemons'`` covers."""

    __tablename__ = "maintenance_window_daemons"
    __table_args__ = (Index(None, "daemon_id"),)

    window_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("maintenance_windows.id", ondelete="CASCADE"), primary_key=True
    )
    daemon_id: Mapped[str] = mapped_column(String(128), primary_key=True)


class Lease(Base):
    """One row per lease name ever acquired, kept so that its fencing token only grows.

    Who holds it is derived, not stored as a state to renew: the lease is held
    while ``holder``'s row is live (app/registry/expiry.py) and still in the
    session ``holder_session`` (app/leases/service.py).
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The last token handed out; the next holder gets one more.
    token: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str | None] = mapped_column(String(128))
    holder_session: Mapped[str | None] = mapped_column(String(32))
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LeaseHold(Base):
    """The history of leases: who held which lease, with which token, from when to when.

    ``ended_at`` is NULL while the hold is open; a hold lost with its holder's
    session is closed by the write that ends the session (app/leases/holds.py).
    """

    __tablename__ = "lease_holds"
    __table_args__ = (
        CheckConstraint(_in("end_reason", LEASE_HOLD_ENDS), name="end_reason"),
        Index(None, "name", "acquired_at"),
        # One open hold per lease, however acquirers race.
        Index(
            "ix_lease_holds_open",
            "name",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        # The holds a session's end closes.
        Index(
            "ix_lease_holds_open_by_holder",
            "holder",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    holder: Mapped[str] = mapped_column(String(128))
    token: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(16))


daemons = Daemon.__table__
daemon_events = DaemonEvent.__table__
service_liveness = ServiceLiveness.__table__
service_outages = ServiceOutage.__table__
alert_deliveries = AlertDelivery.__table__
alert_events = AlertEvent.__table__
open_alerts = OpenAlert.__table__
daemon_task_minutes = DaemonTaskMinute.__table__
daemon_task_hours = DaemonTaskHour.__table__
leases = Lease.__table__
lease_holds = LeaseHold.__table__
maintenance_windows = MaintenanceWindow.__table__
maintenance_window_daemons = MaintenanceWindowDaemon.__table__
