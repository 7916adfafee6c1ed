"""wrapped keys: a data key per protected object and the service's own secrets, wrapped by the master key

``data_keys`` (primary key ``object_id``, ``<kind>:<name>``): the key wrapped by the master key (never in
plaintext), the wrapping provider's public description, when it was created and last wrapped
(`catalog.keyring`). Destroying a row crypto-shreds what its key encrypted; rotation re-wraps every row.

Revision ID: 0012_data_keys
Revises: 0001 (its own branch: the table depends on no other migration)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_data_keys"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("object_id", sa.String(length=200), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("master", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wrapped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("object_id"),
    )


def downgrade() -> None:
    op.drop_table("data_keys")
