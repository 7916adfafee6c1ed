"""datasets: withdrawal — the state (registered or withdrawn), when and why it was withdrawn, when disposed of

An owner withdraws a dataset (``POST /datasets/{name}/withdraw``): the record is kept with ``state = withdrawn``;
after the grace period the job worker destroys its data key and deletes its sealed copy (``disposed_at``).

Revision ID: 0015_dataset_withdrawal
Revises: 0001 (its own branch: only the datasets table)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_dataset_withdrawal"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.String(length=16), server_default="registered", nullable=False))
        batch_op.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("withdrawn_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("disposed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        for c in ("disposed_at", "withdrawn_reason", "withdrawn_at", "state"):
            batch_op.drop_column(c)
