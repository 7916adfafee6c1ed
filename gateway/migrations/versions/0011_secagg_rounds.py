"""secure-aggregation rounds in the store: any gateway process serves any call, a restart loses no round

``secagg_rounds`` (one row per round: public config and task, opener, agreement, stage, stage deadline, the stage
closures, the protocol server's stage/abort reason/sum/survivors, a version bumped by every change),
``secagg_round_members`` (who takes part in which round) and ``secagg_round_entries`` (what the protocol server
received, one row per sender and part: public keys, share envelopes, masked inputs, revealed shares — dropped when
the round aborts or its sum is computed). `gateway.services.rounds` reads and writes them.

Revision ID: 0011_secagg_rounds
Revises: 0002 (its own branch: the rounds' tables depend on no other migration)
Create Date: 2026-12-03
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_secagg_rounds'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'secagg_rounds',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('opener', sa.String(length=64), nullable=False),
        sa.Column('agreement_id', sa.String(length=40), nullable=False),
        sa.Column('config', sa.Text(), nullable=False),
        sa.Column('task', sa.Text(), nullable=True),
        sa.Column('stage', sa.String(length=16), nullable=False),
        sa.Column('stage_timeout', sa.Float(), nullable=False),
        sa.Column('opened_at', sa.Float(), nullable=False),
        sa.Column('deadline', sa.Float(), nullable=False),
        sa.Column('finished_at', sa.Float(), nullable=True),
        sa.Column('history', sa.Text(), nullable=False),
        sa.Column('server', sa.Text(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_secagg_rounds_opener'), 'secagg_rounds', ['opener'], unique=False)
    op.create_index(op.f('ix_secagg_rounds_stage'), 'secagg_rounds', ['stage'], unique=False)
    op.create_table(
        'secagg_round_members',
        sa.Column('round_id', sa.String(length=40), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('round_id', 'name'),
    )
    op.create_index(op.f('ix_secagg_round_members_name'), 'secagg_round_members', ['name'], unique=False)
    op.create_table(
        'secagg_round_entries',
        sa.Column('round_id', sa.String(length=40), nullable=False),
        sa.Column('part', sa.String(length=16), nullable=False),
        sa.Column('sender', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('round_id', 'part', 'sender'),
    )


def downgrade() -> None:
    op.drop_table('secagg_round_entries')
    op.drop_index(op.f('ix_secagg_round_members_name'), table_name='secagg_round_members')
    op.drop_table('secagg_round_members')
    op.drop_index(op.f('ix_secagg_rounds_stage'), table_name='secagg_rounds')
    op.drop_index(op.f('ix_secagg_rounds_opener'), table_name='secagg_rounds')
    op.drop_table('secagg_rounds')
