"""agreements: co-owners' signatures (multi-owner agreements, 收益分成)

``agreement_signatures`` keeps each co-owner's signature of its part of one version of an agreement: the owner,
the version and the document hash signed, and the datasets of its part. A signature counts only while the
agreement's current hash is the one signed (an amendment voids it). Co-owners themselves are named in the
document (``co_owners``), which needs no column.

Revision ID: 0020_agreement_signatures
Revises: 0002 (its own branch: it adds one policies table)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_agreement_signatures"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agreement_signatures",
        sa.Column("agreement_id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document_hash", sa.String(length=80), nullable=False),
        sa.Column("datasets_json", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agreement_id"], ["agreements.id"]),
        sa.PrimaryKeyConstraint("agreement_id", "owner", "version"),
    )


def downgrade() -> None:
    op.drop_table("agreement_signatures")
