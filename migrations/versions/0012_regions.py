"""regions: the region each daemon runs in

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: daemons registered before regions existed have none.
    op.add_column("daemons", sa.Column("region", sa.String(length=64), nullable=True))
    op.create_index("ix_daemons_region_expires_at", "daemons", ["region", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_daemons_region_expires_at", "daemons")
    op.drop_column("daemons", "region")
