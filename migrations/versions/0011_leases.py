"""leader leases with fencing tokens: session ids, leases, their history, lease_holders

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
_OPEN = sa.text("ended_at IS NULL")

# Portable SQL (SQLite and Postgres), for "who held lease X when": one row per
# hold. An open hold's holder is in the session that acquired it (a session's
# end closes its holds), so it runs until that daemon's expires_at, which lies
# in the future while the daemon heartbeats and in the past once it lapsed
# without a watcher having recorded it yet (end_reason is then still NULL).
LEASE_HOLDERS = """
CREATE VIEW lease_holders AS
SELECT
    h.name,
    h.holder,
    h.token,
    h.acquired_at AS held_from,
    COALESCE(h.ended_at, d.expires_at) AS held_until,
    h.end_reason
FROM lease_holds h
LEFT JOIN daemons d ON h.ended_at IS NULL AND d.daemon_id = h.holder
"""


def upgrade() -> None:
    # '' for the sessions already running: unique enough, since every later
    # registration draws a random id, and no lease can name an earlier session.
    op.add_column(
        "daemons", sa.Column("session_id", sa.String(32), nullable=False, server_default="")
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("holder_session", sa.String(32), nullable=True),
        sa.Column("acquired_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )
    op.create_table(
        "lease_holds",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False),
        sa.Column("ended_at", Timestamp, nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.CheckConstraint(
            "end_reason IN ('released', 'stale', 'deregistered', 'reregistered')",
            name="ck_lease_holds_end_reason",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lease_holds"),
    )
    op.create_index("ix_lease_holds_name_acquired_at", "lease_holds", ["name", "acquired_at"])
    op.create_index(
        "ix_lease_holds_open", "lease_holds", ["name"], unique=True,
        postgresql_where=_OPEN, sqlite_where=_OPEN,
    )
    op.create_index(
        "ix_lease_holds_open_by_holder", "lease_holds", ["holder"],
        postgresql_where=_OPEN, sqlite_where=_OPEN,
    )
    op.execute(LEASE_HOLDERS)


def downgrade() -> None:
    op.execute("DROP VIEW lease_holders")
    op.drop_table("lease_holds")
    op.drop_table("leases")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would break the views on it.
    op.execute("ALTER TABLE daemons DROP COLUMN session_id")
