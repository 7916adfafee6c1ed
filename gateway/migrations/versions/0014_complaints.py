"""complaints and objections (投诉与异议): one row per complaint, its state, deadline and history

``complaints``: the kind (complaint or objection), the target (agreement, job, output or subject: a subject only as
its keyed hash, never raw), the owner it is routed to, the filer, whether an owner filed it on a person's behalf,
the text, the state (open, investigating, resolved, rejected), the deadline and the history of moves with their
reasons (`policies.complaints`).

Revision ID: 0014_complaints
Revises: 0002 (its own branch: the table depends on no other migration)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_complaints"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=80), nullable=False),
        sa.Column("agreement_id", sa.String(length=40), nullable=True),
        sa.Column("subject_hash", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("filer", sa.String(length=64), nullable=False),
        sa.Column("filer_role", sa.String(length=16), nullable=False),
        sa.Column("on_behalf", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("history_json", sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('complaint', 'objection')", name="ck_complaints_kind"),
        sa.CheckConstraint(
            "target_kind IN ('agreement', 'job', 'output', 'subject')", name="ck_complaints_target_kind"
        ),
        sa.CheckConstraint("state IN ('open', 'investigating', 'resolved', 'rejected')", name="ck_complaints_state"),
        sa.PrimaryKeyConstraint("id"),
    )
    for col in ("agreement_id", "subject_hash", "owner", "filer"):
        op.create_index(f"ix_complaints_{col}", "complaints", [col])


def downgrade() -> None:
    op.drop_table("complaints")
