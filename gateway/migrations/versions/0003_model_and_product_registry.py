"""verification products and the model-scoring meter

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('verification_products',
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('dataset', sa.String(length=63), nullable=False),
    sa.Column('subject_column', sa.String(length=63), nullable=False),
    sa.Column('predicate', sa.Text(), nullable=False),
    sa.Column('params_json', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('dataset_fingerprint', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('verification_products', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verification_products_dataset'), ['dataset'], unique=False)
        batch_op.create_index(batch_op.f('ix_verification_products_owner'), ['owner'], unique=False)

    op.create_table('model_score_usage',
    sa.Column('agreement_id', sa.String(length=64), nullable=False),
    sa.Column('model_id', sa.String(length=40), nullable=False),
    sa.Column('scores', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('agreement_id', 'model_id')
    )


def downgrade() -> None:
    op.drop_table('model_score_usage')
    with op.batch_alter_table('verification_products', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verification_products_owner'))
        batch_op.drop_index(batch_op.f('ix_verification_products_dataset'))

    op.drop_table('verification_products')
