"""job leases: which process runs a job and until when its heartbeat holds it

``jobs.lease_owner`` (a per-process random id) and ``jobs.lease_expires_at`` (renewed by the running process's
heartbeat, cleared with the job's outcome). A sweeper in every worker fails-and-refunds or finishes a job whose
lease expired (`policies.jobs.sweep_expired`); a job another live process holds is never touched.

Revision ID: 0009_job_leases
Revises: 0008_job_outputs
Create Date: 2026-12-03
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_job_leases'
down_revision: str | None = '0008_job_outputs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('lease_owner', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_index('ix_jobs_state_lease', ['state', 'lease_expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_state_lease')
        batch.drop_column('lease_expires_at')
        batch.drop_column('lease_owner')
