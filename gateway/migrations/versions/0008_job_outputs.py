"""job outputs: outputs awaiting the owner's release and owner-only failure detail, stored with the job

Until this revision these were JSON files under ``work/pending/`` and ``work/detail/``, written after the job's
state change. The files of an older home are imported into this table when the service opens the home
(`gateway.legacy_outputs.import_side_files`, called by `gateway.context.open_context`): a migration sees only
the database connection, not the home's work directory (with PostgreSQL the two are unrelated).

Revision ID: 0008_job_outputs
Revises: 0002
Create Date: 2026-12-03
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008_job_outputs'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_outputs',
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.Column('owner_detail', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('job_id')
    )


def downgrade() -> None:
    op.drop_table('job_outputs')
