"""named reviewers (专家委员会, 网信): a principal's reviewer kind, an agreement's required reviewers, a sign-off's kind

A principal with role ``reviewer`` carries its kind (``expert_committee`` or ``cyberspace``); the data authority
names the reviewers an agreement under review needs (``agreements.reviewers_json``: {name: kind}), and each
sign-off records the reviewer's kind (``agreement_reviews.reviewer_kind``). Nullable columns: nothing existing
changes.

Revision ID: 0021_named_reviewers
Revises: 0013_agreement_filing
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_named_reviewers"
down_revision: str | None = "0013_agreement_filing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("principals", schema=None) as b:
        b.add_column(sa.Column("reviewer_kind", sa.String(length=32), nullable=True))
    with op.batch_alter_table("agreements", schema=None) as b:
        b.add_column(sa.Column("reviewers_json", sa.Text(), nullable=True))
    with op.batch_alter_table("agreement_reviews", schema=None) as b:
        b.add_column(sa.Column("reviewer_kind", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agreement_reviews", schema=None) as b:
        b.drop_column("reviewer_kind")
    with op.batch_alter_table("agreements", schema=None) as b:
        b.drop_column("reviewers_json")
    with op.batch_alter_table("principals", schema=None) as b:
        b.drop_column("reviewer_kind")
