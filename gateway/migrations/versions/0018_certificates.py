"""certificates: the registry of verification products' and released outputs' certificates, with their sources

A product's certificate is issued when it is defined, an output's when its job is released (valid until its
agreement's end at the latest); revocation is recorded with its reason (`catalog.certificates`).

Revision ID: 0018_certificates
Revises: 0001 (its own branch: one new catalog table)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_certificates"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("agreement_id", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("covers_json", sa.Text(), nullable=False),
        sa.Column("sources_json", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_certificates_agreement_id", "certificates", ["agreement_id"], unique=False)
    op.create_index("ix_certificates_owner", "certificates", ["owner"], unique=False)
    op.create_index("ix_certificates_kind_subject", "certificates", ["kind", "subject"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_certificates_kind_subject", table_name="certificates")
    op.drop_index("ix_certificates_owner", table_name="certificates")
    op.drop_index("ix_certificates_agreement_id", table_name="certificates")
    op.drop_table("certificates")
