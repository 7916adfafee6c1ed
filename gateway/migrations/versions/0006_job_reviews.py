"""job reviews: the owner's review (plan and run on the mock) stored once per spec

Revision ID: 0006_job_reviews
Revises: 0002
Create Date: 2026-11-24
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_job_reviews'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_reviews',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('spec_hash', sa.String(length=80), nullable=False),
    sa.Column('review_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index(op.f('ix_job_reviews_spec_hash'), 'job_reviews', ['spec_hash'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_job_reviews_spec_hash'), table_name='job_reviews')
    op.drop_table('job_reviews')
