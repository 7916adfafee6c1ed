"""agreements: disposal on revocation or expiry — the journaled steps and the signed record; revoked model
certificates

When an agreement ends, its exit clause is carried out step by step (`policies.disposal`): each step's result is
noted in ``agreement_disposals.steps_json`` in the step's transaction, and the signed record completes the row.
A model trained under an agreement whose clause revokes derived models gets ``revoked_at``/``revoked_reason``.

Revision ID: 0019_agreement_disposal
Revises: 0005 (its own branch: the agreements table and the model registry exist from there)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_agreement_disposal"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agreement_disposals",
        sa.Column("agreement_id", sa.String(length=40), nullable=False),
        sa.Column("exit_case", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("steps_json", sa.Text(), nullable=False),
        sa.Column("record_json", sa.Text(), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agreement_id"], ["agreements.id"]),
        sa.PrimaryKeyConstraint("agreement_id"),
    )
    with op.batch_alter_table("model_registry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_registry", schema=None) as batch_op:
        batch_op.drop_column("revoked_reason")
        batch_op.drop_column("revoked_at")
    op.drop_table("agreement_disposals")
