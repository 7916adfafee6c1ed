"""the consent registry (同意登记): recorded consents and the trustees an owner authorises to record them

``consents``: one row per consent an owner (or a trustee it named) recorded: the subject as its keyed hash (never
raw), the grantee, the scenario, the products covered (verification products and ``psi_members:<dataset>``), the
validity window and the revocation with its reason (`policies.consent`). ``consent_trustees``: (owner, trustee).

Revision ID: 0016_consents
Revises: 0002 (its own branch: the tables depend on no other migration)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_consents"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("subject_hash", sa.String(length=128), nullable=False),
        sa.Column("grantee", sa.String(length=64), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("products_json", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for col in ("owner", "subject_hash", "grantee"):
        op.create_index(f"ix_consents_{col}", "consents", [col])
    op.create_table(
        "consent_trustees",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("trustee", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "trustee"),
    )


def downgrade() -> None:
    op.drop_table("consent_trustees")
    op.drop_table("consents")
