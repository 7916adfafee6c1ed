"""verification products: hide_membership (refuse predicates whose verdict is the membership bit)

Revision ID: 0007_verification_hide_membership
Revises: 0003
Create Date: 2026-11-24
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_verification_hide_membership'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('verification_products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hide_membership', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('verification_products', schema=None) as batch_op:
        batch_op.drop_column('hide_membership')
