"""daemons remember which daemon key registered them, by the key's fingerprint

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: rows registered before keys had kinds were registered
    # with an admin key, and NULL means exactly that.
    op.add_column("daemons", sa.Column("owner_key_fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("daemons", "owner_key_fingerprint")
