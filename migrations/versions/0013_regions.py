"""regions: a daemon's region, and region outages (disrupted / recovered)

Revision ID: 0013
Revises: 0009
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_OPEN = sa.text("kind = 'disrupted' AND ended_at IS NULL")


def upgrade() -> None:
    # Nullable, no default: daemons registered before regions existed have none.
    op.add_column("daemons", sa.Column("region", sa.String(length=64), nullable=True))
    op.create_index("ix_daemons_region_expires_at", "daemons", ["region", "expires_at"])
    op.create_table(
        "region_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.Column("daemons", Json, nullable=False),
        sa.Column("ended_at", Timestamp, nullable=True),
        sa.CheckConstraint("kind IN ('disrupted', 'recovered')", name=op.f("ck_region_events_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_region_events")),
    )
    op.create_index("ix_region_events_region_occurred_at", "region_events", ["region", "occurred_at"])
    op.create_index(
        "ix_region_events_open", "region_events", ["region"], unique=True,
        postgresql_where=_OPEN, sqlite_where=_OPEN,
    )
    # Deliveries of region alerts carry region_events ids, which may equal a
    # daemon_events id: the alert type tells the two apart.
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_constraint("uq_alert_deliveries_event_id_url", type_="unique")
        batch.create_unique_constraint(
            "uq_alert_deliveries_event_id_alert_type_url", ["event_id", "alert_type", "url"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM alert_deliveries WHERE alert_type LIKE 'region.%'")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_constraint("uq_alert_deliveries_event_id_alert_type_url", type_="unique")
        batch.create_unique_constraint("uq_alert_deliveries_event_id_url", ["event_id", "url"])
    op.drop_table("region_events")
    op.drop_index("ix_daemons_region_expires_at", "daemons")
    op.drop_column("daemons", "region")
