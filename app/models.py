"""Tables: the live registry of daemons and the history of what happened to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.timestamps import UTCDateTime

Status = Literal["healthy", "degraded", "unhealthy"]
STATUSES: tuple[str, ...] = get_args(Status)
EVENT_KINDS = ("registered", "status_changed", "stale", "deregistered")

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
        # The reaper's range scan: DELETE ... WHERE expires_at < now.
        Index(None, "expires_at"),
    )

    daemon_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    capabilities: Mapped[list[str]] = mapped_column(Json)
    poll_interval: Mapped[int] = mapped_column(Integer)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    session_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    tasks_processed: Mapped[int] = mapped_column(BigInteger)
    current_task: Mapped[str | None] = mapped_column(String(256))


class DaemonEvent(Base):
    """What happened to a daemon, written only when something changes.

    Steady heartbeats add no rows. ``occurred_at`` is when the change took
    effect (for ``stale``: last heartbeat plus the TTL), ``recorded_at`` when
    the service wrote it; ``status`` is the status in force from then on.
    """

    __tablename__ = "daemon_events"
    __table_args__ = (
        CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
        Index(None, "daemon_id", "occurred_at"),
        Index(None, "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    daemon_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[dict[str, Any] | None] = mapped_column(Json)


daemons = Daemon.__table__
daemon_events = DaemonEvent.__table__
