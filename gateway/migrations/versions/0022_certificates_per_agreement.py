"""certificates per agreement: a verification product's certificate under each agreement it is used under

A product keeps its own certificate (agreement_id null) and gets one more per agreement under which it is first
used (`catalog.certificates.issue_bound_in`): the unique index on (kind, subject) becomes one on
(kind, subject, agreement_id). Existing rows satisfy both.

Revision ID: 0022_certificates_per_agreement
Revises: 0018_certificates
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022_certificates_per_agreement"
down_revision: str | None = "0018_certificates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_certificates_kind_subject", table_name="certificates")
    op.create_index(
        "ix_certificates_kind_subject_agreement", "certificates", ["kind", "subject", "agreement_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_certificates_kind_subject_agreement", table_name="certificates")
    op.create_index("ix_certificates_kind_subject", "certificates", ["kind", "subject"], unique=True)
